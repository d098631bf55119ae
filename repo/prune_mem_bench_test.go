package repo_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

// BenchmarkPruneMemory measures the heap a prune takes as the number of
// blobs grows: a repository on a local directory with n tiny data blobs
// (a blob stands for a 512 KiB chunk: n = 1M is a 500 GiB repository)
// in 100 snapshots, half of them forgotten. It reports the peak heap
// growth during the prune, per blob and in total, with the exact sets and
// with a 4 MiB limit that makes them Bloom filters.
func BenchmarkPruneMemory(b *testing.B) {
	sizes := []int{250_000, 1_000_000}
	if v, err := strconv.Atoi(os.Getenv("DRCTL_BENCH_PRUNE_BLOBS")); err == nil && v > 0 {
		sizes = append(sizes, v) // a larger repository, on demand
	}
	for _, n := range sizes {
		for _, limit := range []int64{0, 4 << 20} {
			name := fmt.Sprintf("blobs=%d/limit=default", n)
			if limit > 0 {
				name = fmt.Sprintf("blobs=%d/limit=%dMiB", n, limit>>20)
			}
			b.Run(name, func(b *testing.B) { benchPruneMemory(b, n, limit) })
		}
	}
}

func benchPruneMemory(b *testing.B, n int, limit int64) {
	ctx := context.Background()
	tg, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	buildManyBlobs(b, tg, n)
	// A fresh handle: nothing of the builder stays reachable.
	r, err := repo.Open(ctx, tg, "pw", repo.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.Forget(ctx, "vm", repo.KeepPolicy{Last: 50}, false); err != nil {
		b.Fatal(err)
	}
	// The heap measured is close to the live heap: a GC every 10 %
	// growth, not the default 100 % that lets garbage double it.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	first := true
	for b.Loop() {
		// Twice: the builder's objects with finalizers (files) keep
		// what they reach until the cycle after their finalizer ran.
		runtime.GC()
		runtime.GC()
		stop := heapPeak()
		res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1, MemoryLimit: limit})
		grew := stop()
		if err != nil {
			b.Fatal(err)
		}
		if first {
			first = false
			b.ReportMetric(float64(grew)/(1<<20), "MiB-heap-peak")
			b.ReportMetric(float64(grew)/float64(n), "B-heap/blob")
			b.ReportMetric(float64(res.PacksDeleted+res.RepackedDeleted), "packs-deleted")
			b.ReportMetric(float64(res.BytesFreed)/(1<<20), "MiB-freed")
		}
	}
	if rep, err := r.Verify(ctx, repo.VerifyOptions{}); err != nil {
		b.Fatalf("after prune: %v\n%s", err, rep.Summary())
	}
}

// buildManyBlobs writes n 16-byte data blobs in 100 snapshots of vm.
func buildManyBlobs(b *testing.B, tg targets.Target, n int) {
	ctx := context.Background()
	r, err := repo.Init(ctx, tg, "pw", repo.Options{KDF: repo.FastKDF, Tune: func(c *repo.Config) { c.PackSize = 1 << 20 }})
	if err != nil {
		b.Fatal(err)
	}
	const snaps, perPage = 100, 1000
	perSnap := n / snaps
	start := time.Now()
	w, err := r.NewWriter(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	blob := make([]byte, 16)
	for s := range snaps {
		var pages []repo.PageRef
		var exts []repo.Extent
		for i := range perSnap {
			binary.LittleEndian.PutUint64(blob, uint64(s*perSnap+i))
			binary.LittleEndian.PutUint64(blob[8:], 0x5eed)
			id, _, err := w.Save(ctx, chunk.DataBlob, blob)
			if err != nil {
				b.Fatal(err)
			}
			off := int64(len(exts)) * 16
			exts = append(exts, repo.Extent{Off: int64(len(pages))*perPage*16 + off, Len: 16, Blob: id})
			if len(exts) == perPage || i == perSnap-1 {
				page, _, err := w.Save(ctx, chunk.MetaBlob, repo.EncodeMapPage(exts, int64(len(pages))*perPage*16))
				if err != nil {
					b.Fatal(err)
				}
				pages = append(pages, repo.PageRef{Map: page, Allocated: int64(len(exts)) * 16})
				exts = exts[:0]
			}
		}
		size := int64(perSnap) * 16
		d := repo.Disk{Name: "d0", Size: size, PageSize: perPage * 16, BlockSize: 16, Pages: pages, Allocated: size, ChangeSource: "full"}
		snap := &repo.Snapshot{ID: repo.NewSnapshotID(), VM: "vm", Time: time.Now().UTC().Add(time.Duration(s) * time.Second), Writer: r.WriterID(),
			Consistency: repo.ConsistencyNone, Disks: []repo.Disk{d}}
		if err := w.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if s == snaps-1 {
			if err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
			if err := w.Commit(ctx, snap); err != nil {
				b.Fatal(err)
			}
		} else if err := r.SaveSnapshot(ctx, snap); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("built %d blobs in %d snapshots in %v", n, snaps, time.Since(start).Round(time.Second))
}

// heapPeak samples the heap every millisecond until stop, which returns
// the peak growth above the heap at the start.
func heapPeak() func() int64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() int64 {
		metrics.Read(sample)
		return int64(sample[0].Value.Uint64())
	}
	base := read()
	if os.Getenv("DRCTL_BENCH_HEAP_BASE") != "" {
		println("heap at start", base)
	}
	var peak atomic.Int64
	peak.Store(base)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return peak.Load() - base
	}
}

// BenchmarkOpenMemory measures what an open repository keeps on the heap
// (the index that writers deduplicate against, the condemned view): what
// the agent, which keeps repositories open, holds between runs. Sizes as
// in BenchmarkPruneMemory.
func BenchmarkOpenMemory(b *testing.B) {
	sizes := []int{1_000_000}
	if v, err := strconv.Atoi(os.Getenv("DRCTL_BENCH_PRUNE_BLOBS")); err == nil && v > 0 {
		sizes = append(sizes, v)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("blobs=%d", n), func(b *testing.B) {
			ctx := context.Background()
			tg, err := local.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			buildManyBlobs(b, tg, n)
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&before)
				r, err := repo.Open(ctx, tg, "pw", repo.Options{})
				if err != nil {
					b.Fatal(err)
				}
				w, err := r.NewWriter(ctx, "bench") // loads the index
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B-heap/blob")
				if err := w.Close(ctx); err != nil {
					b.Fatal(err)
				}
				runtime.KeepAlive(r)
			}
		})
	}
}
