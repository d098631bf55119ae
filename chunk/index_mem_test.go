package chunk

import (
	"crypto/rand"
	"os"
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkIndexMemory reports the heap an index holds per blob, the cost
// every open repository pays (writers keep the index to deduplicate):
// DRCTL_BENCH_INDEX_BLOBS sets the count (default 1M).
func BenchmarkIndexMemory(b *testing.B) {
	n := 1 << 20
	if v, err := strconv.Atoi(os.Getenv("DRCTL_BENCH_INDEX_BLOBS")); err == nil && v > 0 {
		n = v
	}
	const perPack = 64
	packs := make([]IndexPack, 0, n/perPack+1)
	for i := 0; i < n; i += perPack {
		p := IndexPack{Size: 1 << 25}
		rand.Read(p.ID[:])
		for j := 0; j < perPack && i+j < n; j++ {
			var bl PackedBlob
			rand.Read(bl.ID[:])
			bl.Offset, bl.Length, bl.RawLength = uint32(j)<<19, 1<<19, 1<<19
			p.Blobs = append(p.Blobs, bl)
		}
		packs = append(packs, p)
	}
	var perBlob float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ix := NewIndex()
		for _, p := range packs {
			ix.AddPack(p)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perBlob = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		runtime.KeepAlive(ix)
	}
	b.ReportMetric(perBlob, "B/blob")
}

// BenchmarkIndexLookup measures Has on an index of 1M blobs: hits (a
// chunk already stored) and misses (a new chunk, the common case of a
// first replication).
func BenchmarkIndexLookup(b *testing.B) {
	const n = 1 << 20
	ix := NewIndex()
	ids := make([]ID, n)
	for i := 0; i < n; i += 64 {
		p := IndexPack{Size: 1 << 25}
		rand.Read(p.ID[:])
		for j := range 64 {
			rand.Read(ids[i+j][:])
			p.Blobs = append(p.Blobs, PackedBlob{ID: ids[i+j], Offset: uint32(j) << 19, Length: 1 << 19})
		}
		ix.AddPack(p)
	}
	misses := make([]ID, 4096)
	for i := range misses {
		rand.Read(misses[i][:])
	}
	b.Run("hit", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if !ix.Has(ids[i%n]) {
				b.Fatal("miss")
			}
			i += 7919
		}
	})
	b.Run("miss", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if ix.Has(misses[i%len(misses)]) {
				b.Fatal("hit")
			}
			i++
		}
	})
}
