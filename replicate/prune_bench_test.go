package replicate_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets/local"
)

// BenchmarkPrune1000Snapshots builds a repository of 1000 snapshots of a
// VM (an 8 MiB disk, 16 scattered 4 KiB blocks changed between
// snapshots) in a local directory, forgets all but the last 100, and
// times the prune that follows (no grace period: nothing else writes),
// and before that a prune with all 1000 kept.
func BenchmarkPrune1000Snapshots(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	t, err := local.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(ctx, t, "pw", repo.Options{KDF: repo.FastKDF, Tune: func(c *repo.Config) { c.PackSize = 4 << 20 }})
	if err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(b.TempDir(), "disk.img")
	testimg.Write(b, img, 8<<20, 1)
	const n = 1000
	start := time.Now()
	for i := range n {
		if i > 0 {
			testimg.Scatter(b, img, 16, uint64(i))
		}
		if _, err := replicate.Run(ctx, r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built %d snapshots in %v", n, time.Since(start).Round(time.Second))
	// Steady state: every snapshot kept, prune reads all 1000 manifests
	// and their map pages and finds the little that is unused.
	start = time.Now()
	if _, err := r.Prune(ctx, repo.PruneOptions{Grace: -1}); err != nil {
		b.Fatal(err)
	}
	keptAll := time.Since(start)
	if _, err := r.Forget(ctx, "vm", repo.KeepPolicy{Last: 100}, false); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(keptAll.Milliseconds()), "ms-prune-all-kept")
		b.ReportMetric(float64(res.PacksBefore), "packs-before")
		b.ReportMetric(float64(res.PacksAfter), "packs-after")
		b.ReportMetric(float64(res.BytesFreed)/(1<<20), "MiB-freed")
	}
}
