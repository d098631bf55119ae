package recovery_test

import (
	"bytes"
	"os"
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
// server (versitygw on 127.0.0.1) and, in the same run, measures the two
// physical limits of a restore on this machine: reading every pack of the
// repository with 8 parallel GETs (bytes discarded), and writing the
// disk's bytes to a new file in the same directory (1 MiB writes, fsync).
// restore-MB/s (disk bytes per second) over the lower of the two limits is
// the restore's efficiency (goal ≥ 0.7).
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

	var restoreTime, readTime, writeTime time.Duration
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

		start = time.Now()
		if err := writeFile(filepath.Join(dir, "plain"), snap.Disks[0].Allocated); err != nil {
			b.Fatal(err)
		}
		writeTime += time.Since(start)
	}
	mb := float64(snap.Disks[0].Allocated) / 1e6 * float64(b.N)
	restoreMBs := mb / restoreTime.Seconds()
	readMBs := float64(packBytes) / 1e6 * float64(b.N) / readTime.Seconds()
	b.ReportMetric(restoreMBs, "restore-MB/s")
	b.ReportMetric(float64(fetched)/1e6/restoreTime.Seconds(), "restore-fetch-MB/s")
	b.ReportMetric(readMBs, "target-read-MB/s")
	writeMBs := mb / writeTime.Seconds()
	b.ReportMetric(writeMBs, "disk-write-MB/s")
	b.ReportMetric(restoreMBs/min(readMBs*mb/(float64(packBytes)/1e6*float64(b.N)), writeMBs), "restore/limit")
	if !strings.HasPrefix(packs[0].Key, "data/") {
		b.Fatal("no packs")
	}
}

// writeFile writes n bytes of non-zero data in 1 MiB writes and syncs.
func writeFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := bytes.Repeat([]byte("drctl restore limit "), 1<<20/20+1)[:1<<20]
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), n-off)], off); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
