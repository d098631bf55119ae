package testvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// kvmProbeTimeout bounds the KVM probe boot. With working KVM the guest
// is up in well under a second; on a host whose KVM cannot run it (nested
// KVM with a crippled CPUID spins forever in the firmware) the probe
// costs this much, once per cache.
const kvmProbeTimeout = 6 * time.Second

// resolveAccel picks the accelerator: Options.Accel, else
// $DRCTL_TESTVM_ACCEL, each "tcg", "kvm" or "auto" (the default). Auto
// means KVM when /dev/kvm opens and a probe boot of this guest under KVM
// reaches /init; else TCG. /dev/kvm alone proves nothing: on nested hosts
// QEMU starts with it yet the guest never boots.
func resolveAccel(ctx context.Context, qemu string, opts Options) (string, error) {
	a := opts.Accel
	if a == "" {
		a = os.Getenv("DRCTL_TESTVM_ACCEL")
	}
	switch a {
	case "tcg", "kvm":
		return a, nil
	case "", "auto":
		return probeAccel(ctx, qemu, opts.Artifacts)
	}
	return "", fmt.Errorf("test VM: unknown accelerator %q (want tcg, kvm or auto)", a)
}

// probeAccel runs or recalls the KVM probe. The result is cached per
// guest, QEMU binary and host name; delete the kvm-probe-* file in the
// cache or set DRCTL_TESTVM_ACCEL to override it.
func probeAccel(ctx context.Context, qemu string, a *Artifacts) (string, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", nil
	}
	f.Close()
	st, err := os.Stat(qemu)
	if err != nil {
		return "", fmt.Errorf("probe KVM: %w", err)
	}
	host, _ := os.Hostname()
	// The kernel, not the initramfs, decides whether KVM can boot the
	// guest; init.sh edits should not cost another probe.
	key := shortHash([]byte(a.Kernel), []byte(qemu), []byte(strconv.FormatInt(st.Size(), 10)),
		[]byte(st.ModTime().String()), []byte(host))
	path := filepath.Join(a.CacheDir, "kvm-probe-"+key)
	if accel, ok := readProbe(path); ok {
		return accel, nil
	}
	// Parallel tests would otherwise all probe at once, and a probe that
	// spins in the firmware burns a CPU.
	unlock, err := lockFile(filepath.Join(a.CacheDir, "kvm-probe.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if accel, ok := readProbe(path); ok {
		return accel, nil
	}
	accel := "tcg"
	if bootsUnderKVM(ctx, a) {
		accel = "kvm"
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("probe KVM: %w", err) // interrupted: no verdict to cache
	}
	if err := writeAtomic(path, []byte(accel)); err != nil {
		return "", err
	}
	return accel, nil
}

// readProbe returns a cached probe verdict.
func readProbe(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil || (string(b) != "kvm" && string(b) != "tcg") {
		return "", false
	}
	cacheHit(path)
	return string(b), true
}

// bootsUnderKVM boots the guest in halt mode with KVM and reports whether
// /init came up in time.
func bootsUnderKVM(ctx context.Context, a *Artifacts) bool {
	dir, err := os.MkdirTemp("", "drtvm-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, kvmProbeTimeout)
	defer cancel()
	vm, err := Launch(ctx, Options{Mode: ModeHalt, Dir: dir, Artifacts: a, Accel: "kvm"})
	if err != nil {
		return false
	}
	defer vm.Kill()
	_, err = vm.WaitBooted(ctx)
	return err == nil
}

// lookQEMU finds the emulator.
func lookQEMU() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", missingf("qemu-system-x86_64: %w", err)
	}
	return p, nil
}
