//go:build linux

package replica_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/qmp"
	"github.com/drctl/drctl/internal/testvm"
	"github.com/drctl/drctl/recovery/health"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/repo"
)

// newSite returns a site in a short temporary directory (socket paths are
// limited) whose QEMUs are killed when the test ends, pass or fail: they
// are detached, so nothing else would.
func newSite(t *testing.T) *replica.Site {
	t.Helper()
	dir, err := os.MkdirTemp("", "drrep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killUnder(t, dir)
		os.RemoveAll(dir)
	})
	return replica.NewSite(dir, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// qemuUnder lists the pids of processes whose command line names a path
// under dir.
func qemuUnder(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("qemu-system")) {
			continue
		}
		if bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killUnder(t *testing.T, dir string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := qemuUnder(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("QEMU processes %v survive", pids)
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReplicaLifecycle boots the test guest as a replica on an overlay of
// a base image and takes it through Start, a refused second Start, Find
// from a new Site value, Stop.
func TestReplicaLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	a, err := testvm.Build(ctx, testvm.BuildConfig{})
	if err != nil {
		t.Fatal(err)
	}
	site := newSite(t)
	images := t.TempDir()

	// The base: 1 MiB raw whose first 64 bytes the guest must show.
	head := make([]byte, 64)
	for i := range head {
		head[i] = byte(0xd0 ^ i*7)
	}
	base := filepath.Join(images, "base.raw")
	if err := os.WriteFile(base, append(head, make([]byte, 1<<20-64)...), 0o644); err != nil {
		t.Fatal(err)
	}
	baseSum := sha(t, base)
	overlay := filepath.Join(images, "vdisk0.qcow2")
	if err := replica.CreateOverlay(ctx, base, "raw", overlay); err != nil {
		t.Fatal(err)
	}
	if err := replica.CreateOverlay(ctx, base, "raw", overlay); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second overlay over the first: %v", err)
	}

	spec := replica.Spec{
		VM: "vm1",
		Hardware: repo.Hardware{CPUs: 1, MemoryMiB: 256, Machine: "pc", Kernel: a.Kernel, Initrd: a.Initrd,
			Append: "console=ttyS0 quiet panic=-1 drtest.mode=idle drtest.disks=1",
			NICs:   []repo.NIC{{Model: "virtio-net-pci", MAC: "52:54:00:12:34:56", Network: "lan"}}},
		Disks:    []replica.Disk{{Name: "vdisk0", Path: overlay, Format: "qcow2", Bus: "virtio", Serial: "drdisk0"}},
		Networks: map[string]replica.Network{"lan": {Kind: replica.NetUser, Restrict: true}},
		Accel:    "tcg",
	}
	r, err := site.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Running || r.PID <= 0 || r.Status != "running" || r.Accel != "tcg" || r.Machine != "pc" {
		t.Fatalf("started replica %+v", r)
	}
	dumpOnFailure(t, r)

	res := health.Run(ctx, health.Check{Name: "data", Kind: health.KindSerial,
		Pattern: regexp.MustCompile(`(?m)^DRTEST: DATA disk=0 dev=\S+ offset=0 hex=([0-9a-f]*)$`), Timeout: 2 * time.Minute, Interval: 200 * time.Millisecond},
		health.Target{VM: r.VM, SerialLog: r.SerialLog})
	if !res.OK {
		t.Fatalf("health: %+v", res)
	}
	if got := res.Output[strings.LastIndex(res.Output, "hex=")+4:]; got != hex.EncodeToString(head) {
		t.Fatalf("guest sees %s\nwant        %x", got, head)
	}
	t.Logf("guest showed the data %v after start", res.Finished.Sub(r.Started).Round(time.Millisecond))

	// A second start of the same VM, e.g. from a failover run twice.
	_, err = site.Start(ctx, spec)
	if !errors.Is(err, replica.ErrRunning) || !strings.Contains(err.Error(), "vm1") || !strings.Contains(err.Error(), strconv.Itoa(r.PID)) {
		t.Fatalf("second start: %v", err)
	}
	if pids := qemuUnder(site.Dir); len(pids) != 1 || pids[0] != r.PID {
		t.Fatalf("QEMU processes %v, want only %d", pids, r.PID)
	}

	// Another drctl process sees it.
	other := replica.NewSite(site.Dir, nil)
	found, err := other.Find(ctx, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if found.PID != r.PID || !found.Running || found.Status != "running" || !found.Started.Equal(r.Started) || found.Spec == nil || found.Spec.Disks[0].Serial != "drdisk0" {
		t.Fatalf("found %+v", found)
	}
	list, err := other.List(ctx)
	if err != nil || len(list) != 1 || !list[0].Running {
		t.Fatalf("list %+v, %v", list, err)
	}

	// A write through the guest's disk must land in the overlay.
	c, err := qmp.Dial(ctx, found.QMPSocket)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.HumanMonitorCommand(ctx, `qemu-io -d /machine/peripheral/vdisk0/virtio-backend "write -P 0xab 0 64k"`)
	c.Close()
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("qemu-io write: %q, %v", out, err)
	}

	start := time.Now()
	if err := found.Stop(ctx, time.Second); err != nil { // the test guest ignores ACPI
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	if found.Running {
		t.Fatal("still marked running")
	}
	if _, err := other.Find(ctx, "vm1"); !errors.Is(err, replica.ErrNotRunning) {
		t.Fatalf("find after stop: %v", err)
	}
	if pids := qemuUnder(site.Dir); len(pids) != 0 {
		t.Fatalf("QEMU processes %v after stop", pids)
	}
	if err := r.Stop(ctx, time.Second); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if list, err := site.List(ctx); err != nil || len(list) != 1 || list[0].Running {
		t.Fatalf("list after stop %+v, %v", list, err)
	}

	if sha(t, base) != baseSum {
		t.Fatal("the base image changed")
	}
	qio, err := exec.CommandContext(ctx, "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0xab 0 64k", overlay).CombinedOutput()
	if err != nil || !bytes.Contains(qio, []byte("read 65536/65536")) || bytes.Contains(qio, []byte("failed")) {
		t.Fatalf("overlay lacks the guest's write: %v\n%s", err, qio)
	}
}

// TestReplicaDevices starts a replica paused (-S, so no guest runs and it
// costs no CPU) with every disk bus and network kind this host allows,
// and checks what QEMU made of them.
func TestReplicaDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	site := newSite(t)
	images := t.TempDir()
	var disks []replica.Disk
	for i, bus := range []string{"virtio", "ide", "scsi", "scsi"} {
		path := filepath.Join(images, "d"+strconv.Itoa(i)+".raw")
		if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, replica.Disk{Name: "d" + strconv.Itoa(i), Path: path, Format: "raw", Bus: bus, Serial: "ser" + strconv.Itoa(i)})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	spec := replica.Spec{
		VM: "dev1",
		Hardware: repo.Hardware{CPUs: 1, MemoryMiB: 64, Machine: "pc-i440fx-99.0", // not in this QEMU: falls back to pc
			NICs: []repo.NIC{
				{ID: "lan0", Model: "e1000", MAC: "52:54:00:00:00:0a", Network: "lan"},
				{ID: "dmz0", MAC: "52:54:00:00:00:0b", Network: "dmz"},
			}},
		Disks: disks,
		Networks: map[string]replica.Network{
			"lan": {Kind: replica.NetUser, Restrict: true, Forwards: []string{"tcp:127.0.0.1:" + strconv.Itoa(port) + "-:22"}},
			"dmz": {Kind: replica.NetNone},
		},
		Accel:     "tcg",
		ExtraArgs: []string{"-S"},
	}
	r, err := site.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	dumpOnFailure(t, r)
	if r.Status != "prelaunch" || r.Machine != "pc" {
		t.Fatalf("replica %+v", r)
	}

	c, err := qmp.Dial(ctx, r.QMPSocket)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []struct {
		QDev     string `json:"qdev"`
		Inserted *struct {
			NodeName string `json:"node-name"`
		} `json:"inserted"`
	}
	if err := c.Execute(ctx, "query-block", nil, &blocks); err != nil {
		t.Fatal(err)
	}
	var qdevs []string
	for _, b := range blocks {
		qdevs = append(qdevs, b.QDev)
	}
	for i := range disks {
		if !strings.Contains(strings.Join(qdevs, " "), "vdisk"+strconv.Itoa(i)) {
			t.Errorf("no device vdisk%d in %v", i, qdevs)
		}
	}
	for i, want := range []string{"ide-hd", "scsi-hd"} {
		var typ string
		if err := c.Execute(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/vdisk" + strconv.Itoa(i+1), "property": "type"}, &typ); err != nil || typ != want {
			t.Errorf("vdisk%d is %q (%v), want %s", i+1, typ, err, want)
		}
	}
	info, err := c.HumanMonitorCommand(ctx, "info network")
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	info = strings.ReplaceAll(info, "\r", "")
	// The unconnected NIC is alone on its hub; "info network" does not
	// show link state, and Start fails when set_link does.
	for _, want := range []string{
		"hub 1001\n \\ net1: dmz0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:00:00:0b\n",
		"lan0: index=0,type=nic,model=e1000,macaddr=52:54:00:00:00:0a\n \\ net0: index=0,type=user,net=10.0.2.0,restrict=on",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("info network lacks %q:\n%s", want, info)
		}
	}
	res := health.Run(ctx, health.Check{Kind: health.KindTCP, Addr: "127.0.0.1:" + strconv.Itoa(port), Timeout: 5 * time.Second}, health.Target{})
	if !res.OK {
		t.Errorf("host forward not listening: %+v", res)
	}

	// A paused guest cannot act on ACPI: Stop must go on to quit.
	start := time.Now()
	if err := r.Stop(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("stop took %v", el)
	}
	if log, err := os.ReadFile(r.QEMULog); err != nil || !bytes.Contains(log, []byte("not connected to host network")) {
		t.Errorf("qemu.log: %q, %v", log, err)
	}
}

// dumpOnFailure logs the replica's QEMU log and serial console if the
// test fails.
func dumpOnFailure(t *testing.T, r *replica.Replica) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		q, _ := os.ReadFile(r.QEMULog)
		s, _ := os.ReadFile(r.SerialLog)
		t.Logf("args: %q\nqemu.log:\n%s\nserial.log:\n%s", r.Args, q, s)
	})
}

// TestStartRaceAndFailure: of two concurrent Starts of one VM exactly one
// wins, and a QEMU that refuses its command line leaves nothing running
// and its message in the error. Paused replicas: no guest runs.
func TestStartRaceAndFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	site := newSite(t)
	img := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := replica.Spec{VM: "race", Hardware: repo.Hardware{MemoryMiB: 64},
		Disks: []replica.Disk{{Path: img, Format: "raw"}}, Accel: "tcg", ExtraArgs: []string{"-S"}}

	type result struct {
		r   *replica.Replica
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			r, err := replica.NewSite(site.Dir, nil).Start(ctx, spec)
			results <- result{r, err}
		}()
	}
	var won *replica.Replica
	for range 2 {
		res := <-results
		switch {
		case res.err == nil && won == nil:
			won = res.r
		case errors.Is(res.err, replica.ErrRunning):
		default:
			t.Errorf("start: %v", res.err)
		}
	}
	if won == nil {
		t.Fatal("no start won")
	}
	if pids := qemuUnder(site.Dir); len(pids) != 1 || pids[0] != won.PID {
		t.Fatalf("QEMU processes %v, want only %d", pids, won.PID)
	}
	if err := won.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}

	spec.ExtraArgs = []string{"-S", "-device", "no-such-device"}
	_, err := site.Start(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "QEMU exited during start-up") || !strings.Contains(err.Error(), "no-such-device") {
		t.Fatalf("start with a bad device: %v", err)
	}
	if pids := qemuUnder(site.Dir); len(pids) != 0 {
		t.Fatalf("QEMU processes %v after a failed start", pids)
	}
	if _, err := site.Find(ctx, "race"); !errors.Is(err, replica.ErrNotRunning) {
		t.Fatalf("find after a failed start: %v", err)
	}
	// The run before the failed one keeps its log.
	if _, err := os.Stat(filepath.Join(site.Dir, "race", "qemu.log.old")); err != nil {
		t.Fatal(err)
	}
}
