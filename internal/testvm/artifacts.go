package testvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BuildConfig says where the guest's parts come from. The zero value
// means this host's: the newest /boot/vmlinuz-* that has modules in
// /lib/modules, and /bin/busybox (from busybox-static).
type BuildConfig struct {
	// CacheDir holds the built artifacts; default DefaultCacheDir().
	CacheDir   string
	BootDir    string
	ModulesDir string
	Busybox    string
}

// Artifacts is a built guest: what QEMU's -kernel and -initrd take.
type Artifacts struct {
	// Kernel is the extracted PVH vmlinux, or the bzImage itself when
	// extraction was impossible (PVH false, NoPVHReason says why).
	Kernel        string
	KernelVersion string
	BzImage       string
	PVH           bool
	NoPVHReason   string
	Initrd        string
	// Modules are the kernel modules /init loads, in order.
	Modules  []string
	CacheDir string
	// Key identifies this kernel and initramfs, e.g. for cached probes.
	Key string
}

// artifactFormat is part of every cache key: bump it when the artifacts
// change in a way their inputs do not show (the extraction, the cpio
// layout).
const artifactFormat = "testvm-1"

// unusedFor is how long a cached artifact may go unused before a build
// removes it (kernel upgrades and init script edits leave old ones).
const unusedFor = 14 * 24 * time.Hour

// Build returns the guest's kernel and initramfs, building them into the
// cache directory unless an earlier build (of any process) left them
// there. Builds write to temporary files and rename, so concurrent test
// binaries at worst both build. A build takes a few seconds (most of it
// decompressing the kernel); a cache hit about 0.1 s (hashing inputs).
func Build(ctx context.Context, cfg BuildConfig) (*Artifacts, error) {
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir()
	}
	if cfg.BootDir == "" {
		cfg.BootDir = "/boot"
	}
	if cfg.ModulesDir == "" {
		cfg.ModulesDir = "/lib/modules"
	}
	if cfg.Busybox == "" {
		cfg.Busybox = "/bin/busybox"
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("test VM cache: %w", err)
	}
	bzPath, version, err := findKernel(cfg.BootDir, cfg.ModulesDir)
	if err != nil {
		return nil, err
	}
	mods, err := resolveModules(filepath.Join(cfg.ModulesDir, version), guestModules)
	if err != nil {
		return nil, err
	}
	inputs, err := readInitramfsInputs(ctx, cfg.Busybox, mods)
	if err != nil {
		return nil, err
	}
	a := &Artifacts{KernelVersion: version, BzImage: bzPath, CacheDir: cfg.CacheDir}
	for _, m := range mods {
		a.Modules = append(a.Modules, m.name)
	}
	// One build at a time: the others then find it in the cache.
	unlock, err := lockFile(filepath.Join(cfg.CacheDir, "build.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	kernelKey, err := a.buildKernel(ctx)
	if err != nil {
		return nil, err
	}
	initrdKey, err := a.buildInitrd(inputs)
	if err != nil {
		return nil, err
	}
	a.Key = shortHash([]byte(kernelKey), []byte(initrdKey))
	pruneCache(cfg.CacheDir, time.Now().Add(-unusedFor))
	return a, nil
}

// buildKernel sets a.Kernel, extracting the vmlinux unless cached. A
// kernel that cannot be extracted leaves a ".nopvh" note with the reason,
// so later builds do not try again.
func (a *Artifacts) buildKernel(ctx context.Context) (string, error) {
	bz, err := os.ReadFile(a.BzImage)
	if err != nil {
		return "", missingf("kernel: %w", err)
	}
	key := shortHash([]byte(artifactFormat), bz)
	path := filepath.Join(a.CacheDir, "vmlinux-"+a.KernelVersion+"-"+key)
	if cacheHit(path) {
		a.Kernel, a.PVH = path, true
		return key, nil
	}
	if reason, err := os.ReadFile(path + ".nopvh"); err == nil {
		a.Kernel, a.NoPVHReason = a.BzImage, string(reason)
		return key, nil
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	vmlinux, err := extractVmlinux(bz)
	if err != nil {
		a.Kernel, a.NoPVHReason = a.BzImage, err.Error()
		if errors.Is(err, errNoPVH) {
			if err := writeAtomic(path+".nopvh", []byte(a.NoPVHReason)); err != nil {
				return "", err
			}
		}
		return key, nil
	}
	if err := writeAtomic(path, vmlinux); err != nil {
		return "", err
	}
	a.Kernel, a.PVH = path, true
	return key, nil
}

// buildInitrd sets a.Initrd, building the archive unless cached.
func (a *Artifacts) buildInitrd(in *initramfsInputs) (string, error) {
	parts := [][]byte{[]byte(artifactFormat), initScript, in.busybox, []byte(strings.Join(in.applets, " "))}
	for i, m := range in.modules {
		parts = append(parts, []byte(m.name), in.modData[i])
	}
	key := shortHash(parts...)
	path := filepath.Join(a.CacheDir, "initrd-"+a.KernelVersion+"-"+key+".cpio.gz")
	a.Initrd = path
	if cacheHit(path) {
		return key, nil
	}
	data, err := buildInitramfs(in)
	if err != nil {
		return "", err
	}
	return key, writeAtomic(path, data)
}

// DefaultCacheDir is $DRCTL_TESTVM_CACHE, else .cache/testvm at the root
// of the Go module the process runs in (go test runs in the package
// directory; .cache is git-ignored), else the user cache directory.
func DefaultCacheDir() string {
	if d := os.Getenv("DRCTL_TESTVM_CACHE"); d != "" {
		return d
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return filepath.Join(d, ".cache", "testvm")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "drctl", "testvm")
	}
	return filepath.Join(os.TempDir(), "drctl-testvm")
}

// cacheHit reports whether path exists, and marks it used.
func cacheHit(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now) // only feeds pruneCache
	return true
}

// pruneCache removes artifacts unused since before and temporary files
// of crashed builds. Errors are ignored: a leftover file costs only space.
func pruneCache(dir string, before time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.IsDir() || strings.HasSuffix(e.Name(), ".lock") || !info.ModTime().Before(before) {
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
}

// writeAtomic writes data to path through a temporary file and a rename,
// so readers (other test binaries) never see a partial file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("test VM cache: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("test VM cache: %w", err)
	}
	return nil
}

// shortHash is a cache key: 12 hex digits of SHA-256 over the
// length-prefixed parts.
func shortHash(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
