package recovery_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/open"
)

// BenchmarkRestoreVsTargetRead restores a 256 MiB disk from a real S3
// server (versitygw on 127.0.0.1) and, in the same run, reads every pack
// of the repository with 8 parallel GETs and does nothing with the bytes:
// the physical limit a restore could reach here. restore-MB/s over
// read-MB/s is the restore's efficiency (goal ≥ 0.7).
func BenchmarkRestoreVsTargetRead(b *testing.B) {
	ctx := b.Context()
	srv := s3test.Start(b)
	bucket := srv.NewBucket(b)
	t, err := open.Open(ctx, "s3:"+srv.Endpoint+"/"+bucket, open.Options{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: srv.Region})
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(ctx, t, "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(b.TempDir(), "disk.img")
	testimg.Write(b, img, 256<<20, 7)
	snap, err := replicate.Run(ctx, r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		b.Fatal(err)
	}
	var packs []targets.ObjectInfo
	var packBytes int64
	if err := t.List(ctx, "data/", func(o targets.ObjectInfo) error {
		packs = append(packs, o)
		packBytes += o.Size
		return nil
	}); err != nil {
		b.Fatal(err)
	}

	var restoreTime, readTime time.Duration
	var fetched int64
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		c := &recovery.RestoreCounters{}
		if err := recovery.RestoreSnapshot(ctx, r, snap, dir, recovery.RestoreOptions{Counters: c}); err != nil {
			b.Fatal(err)
		}
		restoreTime += time.Since(start)
		fetched += c.BytesFetched.Load()

		start = time.Now()
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(8)
		for _, p := range packs {
			g.Go(func() error {
				_, _, err := t.Get(gctx, p.Key)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		readTime += time.Since(start)
	}
	mb := float64(snap.Disks[0].Allocated) / 1e6 * float64(b.N)
	restoreMBs := mb / restoreTime.Seconds()
	readMBs := float64(packBytes) / 1e6 * float64(b.N) / readTime.Seconds()
	b.ReportMetric(restoreMBs, "restore-MB/s")
	b.ReportMetric(float64(fetched)/1e6/restoreTime.Seconds(), "restore-fetch-MB/s")
	b.ReportMetric(readMBs, "target-read-MB/s")
	b.ReportMetric(float64(fetched)/1e6/restoreTime.Seconds()/readMBs, "fetch-ratio")
	if !strings.HasPrefix(packs[0].Key, "data/") {
		b.Fatal("no packs")
	}
}
