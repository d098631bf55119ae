package repo

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
)

// TestWriterSeenStaysSmall: the set of blobs a writer has stored but not
// yet indexed does not grow with the run: indexed blobs leave it, and a
// blob saved again after that is still deduplicated (by the index).
func TestWriterSeenStaysSmall(t *testing.T) {
	ctx := context.Background()
	r, err := Init(ctx, memtarget.New(), "pw", Options{KDF: FastKDF, Tune: func(c *Config) { c.PackSize = 1 << 20 }})
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	blob := func(i int) []byte { // incompressible, so that packs fill
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		b := make([]byte, 64<<10)
		rand.NewChaCha8(seed).Read(b)
		return b
	}
	const n = 400 // 25 MiB: about 25 packs, indexed every 4
	maxSeen := 0
	for i := range n {
		if _, _, err := w.Save(ctx, chunk.DataBlob, blob(i)); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		maxSeen = max(maxSeen, len(w.seen))
		w.mu.Unlock()
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if maxSeen >= n/2 {
		t.Fatalf("seen held %d of %d blobs", maxSeen, n)
	}
	for i := range n {
		if _, isNew, err := w.Save(ctx, chunk.DataBlob, blob(i)); err != nil || isNew {
			t.Fatalf("blob %d saved again: new=%v, %v", i, isNew, err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().BlobsNew; got != n {
		t.Fatalf("%d new blobs, want %d", got, n)
	}
	w.Release(ctx)
	t.Logf("seen peaked at %d of %d blobs", maxSeen, n)
}
