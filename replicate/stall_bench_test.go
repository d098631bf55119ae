package replicate_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/testvm"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

// BenchmarkSnapshotGuestStall measures, from inside a running guest, how
// long its disk writes stall while a live snapshot is taken: the guest
// times one 4 KiB O_DIRECT write after another and reports the longest
// per 100 ms window. Each iteration is an incremental snapshot of the
// guest while it writes; the stall is the longest write in any window
// that overlaps the snapshot, against the longest one before snapshots
// began (the baseline: under TCG each write forks dd, which takes ms).
func BenchmarkSnapshotGuestStall(b *testing.B) {
	ctx := b.Context()
	vm, err := testvm.Start(ctx, b, testvm.Options{
		Mode:          testvm.ModeProbe,
		Disks:         []testvm.Disk{{Size: 64 << 20}},
		ProbeWindowMs: 100,
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := vm.WaitSerial(ctx, regexp.MustCompile(`(?m)^DRTEST: PROBE-START`)); err != nil {
		b.Fatal(err)
	}
	waitWindows := func(n int) []testvm.ProbeWindow {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for {
			ws := testvm.ProbeWindows(vm.Serial())
			if len(ws) >= n {
				return ws
			}
			select {
			case <-wctx.Done():
				b.Fatalf("guest reported %d of %d probe windows", len(ws), n)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	r, err := repo.Init(ctx, memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		b.Fatal(err)
	}
	opts := replicate.Options{VM: "probe", QEMU: &replicate.QEMU{QMPSocket: vm.QMPSocket(), WorkDir: b.TempDir()}}
	if _, err := replicate.Run(ctx, r, opts); err != nil {
		b.Fatal(err)
	}
	base := waitWindows(len(testvm.ProbeWindows(vm.Serial())) + 20)
	var baseline int64
	for _, w := range base[len(base)-20:] {
		baseline = max(baseline, w.MaxUs)
	}

	var stall int64
	var took time.Duration
	for b.Loop() {
		before := len(testvm.ProbeWindows(vm.Serial()))
		start := time.Now()
		if _, err := replicate.Run(ctx, r, opts); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		// The window under way when the run ended is reported up to one
		// window later; one more covers serial console lag.
		ws := waitWindows(before + int(time.Since(start)/(100*time.Millisecond)) + 2)
		for _, w := range ws[before:] {
			stall = max(stall, w.MaxUs)
		}
	}
	b.ReportMetric(float64(stall)/1000, "stall-max-ms")
	b.ReportMetric(float64(baseline)/1000, "baseline-max-ms")
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "snapshot-ms")
}
