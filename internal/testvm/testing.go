package testvm

import (
	"context"
	"testing"
)

// Start is Launch for tests: it builds the guest (a cache hit after the
// first build), runs the VM in t.TempDir() unless opts.Dir is set, and
// kills it when the test ends, logging the diagnostics if the test
// failed. Missing QEMU, busybox or kernel give an ErrMissing error that
// the caller should t.Fatal on, never skip.
func Start(ctx context.Context, t testing.TB, opts Options) (*VM, error) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Artifacts == nil {
		a, err := Build(ctx, BuildConfig{})
		if err != nil {
			return nil, err
		}
		opts.Artifacts = a
	}
	vm, err := Launch(ctx, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := vm.Kill(); err != nil {
			t.Error(err)
		}
		if t.Failed() && !vm.reported.Load() {
			t.Logf("test VM diagnostics:\n%s", vm.Diagnostics())
		}
	})
	return vm, nil
}
