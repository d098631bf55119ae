package chunk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/drctl/drctl/chunk"
)

// makeIndexPack lists n blobs back to back, as a packer would.
func makeIndexPack(r *rand.Rand, n int) chunk.IndexPack {
	p := chunk.IndexPack{ID: randomID(r)}
	var off uint32
	for i := range n {
		length := uint32(chunk.Overhead + 1 + r.IntN(1<<20))
		typ := chunk.DataBlob
		if i%5 == 0 {
			typ = chunk.MetaBlob
		}
		p.Blobs = append(p.Blobs, chunk.PackedBlob{Type: typ, ID: randomID(r), Offset: off, Length: length, RawLength: uint32(r.IntN(4 << 20))})
		off += length
	}
	p.Size = off + 200
	return p
}

func locationOf(p chunk.IndexPack, b chunk.PackedBlob) chunk.Location {
	return chunk.Location{Pack: p.ID, Type: b.Type, Offset: b.Offset, Length: b.Length, RawLength: b.RawLength}
}

func TestIndexAddLookup(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	ix := chunk.NewIndex()
	if ix.Len() != 0 || len(ix.Packs()) != 0 {
		t.Fatal("new index is not empty")
	}
	packs := []chunk.IndexPack{makeIndexPack(r, 10), makeIndexPack(r, 1), makeIndexPack(r, 0), makeIndexPack(r, 300)}
	for _, p := range packs {
		ix.AddPack(p)
	}
	total := 0
	for _, p := range packs {
		total += len(p.Blobs)
		if size, ok := ix.PackSize(p.ID); !ok || size != p.Size {
			t.Fatalf("PackSize(%v) = %d, %v; want %d", p.ID.Short(), size, ok, p.Size)
		}
		for _, b := range p.Blobs {
			loc, ok := ix.Lookup(b.ID)
			if !ok || loc != locationOf(p, b) {
				t.Fatalf("Lookup(%v) = %+v, %v; want %+v", b.ID.Short(), loc, ok, locationOf(p, b))
			}
			if !ix.Has(b.ID) {
				t.Fatalf("Has(%v) = false", b.ID.Short())
			}
		}
	}
	if ix.Len() != total {
		t.Fatalf("Len() = %d, want %d", ix.Len(), total)
	}
	missing := randomID(r)
	if _, ok := ix.Lookup(missing); ok || ix.Has(missing) {
		t.Fatal("unknown blob found")
	}
	if _, ok := ix.PackSize(missing); ok {
		t.Fatal("unknown pack found")
	}
	if _, ok := ix.Lookup(chunk.ID{}); ok {
		t.Fatal("zero id found")
	}
	assertPacksEqual(t, ix.Packs(), packs)
}

func TestIndexDuplicateBlobsKeepFirst(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	a, b := makeIndexPack(r, 5), makeIndexPack(r, 4)
	// b repeats a's blobs 1 and 3 at its own offsets.
	b.Blobs[0].ID = a.Blobs[1].ID
	b.Blobs[2].ID = a.Blobs[3].ID
	ix := chunk.NewIndex()
	ix.AddPack(a)
	ix.AddPack(b)
	if ix.Len() != 7 {
		t.Fatalf("Len() = %d, want 7 distinct blobs", ix.Len())
	}
	for _, i := range []int{1, 3} {
		if loc, _ := ix.Lookup(a.Blobs[i].ID); loc != locationOf(a, a.Blobs[i]) {
			t.Fatalf("duplicate blob: Lookup = %+v, want the first location %+v", loc, locationOf(a, a.Blobs[i]))
		}
	}
	if loc, _ := ix.Lookup(b.Blobs[1].ID); loc != locationOf(b, b.Blobs[1]) {
		t.Fatalf("blob unique to the second pack: Lookup = %+v", loc)
	}
	// Packs lists each blob once, under its first pack; the second pack
	// keeps its size but loses the duplicates.
	wantB := b
	wantB.Blobs = []chunk.PackedBlob{b.Blobs[1], b.Blobs[3]}
	assertPacksEqual(t, ix.Packs(), []chunk.IndexPack{a, wantB})

	// The same order reversed keeps b's locations instead.
	ix2 := chunk.NewIndex()
	ix2.AddPack(b)
	ix2.AddPack(a)
	if loc, _ := ix2.Lookup(a.Blobs[1].ID); loc != locationOf(b, b.Blobs[0]) {
		t.Fatalf("reversed order: Lookup = %+v, want %+v", loc, locationOf(b, b.Blobs[0]))
	}
}

func TestIndexSamePackTwice(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	a := makeIndexPack(r, 3)
	ix := chunk.NewIndex()
	ix.AddPack(a)
	again := a
	again.Size++
	again.Blobs = append(slices.Clone(a.Blobs), chunk.PackedBlob{Type: chunk.DataBlob, ID: randomID(r), Offset: 1, Length: 1})
	ix.AddPack(again)
	if len(ix.Packs()) != 1 || ix.Len() != 3 {
		t.Fatalf("re-adding a pack changed the index: %d packs, %d blobs", len(ix.Packs()), ix.Len())
	}
	if size, _ := ix.PackSize(a.ID); size != a.Size {
		t.Fatalf("PackSize = %d, want the first %d", size, a.Size)
	}
}

// Rebuilding an index from Packs() gives the same answers.
func TestIndexPacksRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	ix := chunk.NewIndex()
	var ids []chunk.ID
	for range 20 {
		p := makeIndexPack(r, r.IntN(50))
		ix.AddPack(p)
		for _, b := range p.Blobs {
			ids = append(ids, b.ID)
		}
	}
	ix2 := chunk.NewIndex()
	for _, p := range ix.Packs() {
		ix2.AddPack(p)
	}
	for _, id := range ids {
		l1, _ := ix.Lookup(id)
		l2, ok := ix2.Lookup(id)
		if !ok || l1 != l2 {
			t.Fatalf("rebuilt index: Lookup = %+v, %v; want %+v", l2, ok, l1)
		}
	}
}

func TestIndexConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	packs := make([]chunk.IndexPack, 40)
	for i := range packs {
		packs[i] = makeIndexPack(r, 20)
	}
	ix := chunk.NewIndex()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(packs); i += 4 {
				ix.AddPack(packs[i])
				for _, b := range packs[(i+7)%len(packs)].Blobs {
					ix.Lookup(b.ID)
				}
				ix.Packs()
			}
		})
	}
	wg.Wait()
	if ix.Len() != 40*20 {
		t.Fatalf("Len() = %d, want %d", ix.Len(), 40*20)
	}
}

func sortedBlobs(bs []chunk.PackedBlob) []chunk.PackedBlob {
	out := slices.Clone(bs)
	slices.SortFunc(out, func(a, b chunk.PackedBlob) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// assertPacksEqual compares pack lists, ignoring the order of blobs within
// a pack (Index.Packs does not promise one) and nil versus empty slices.
func assertPacksEqual(t *testing.T, got, want []chunk.IndexPack) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packs, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Size != w.Size {
			t.Fatalf("pack %d: id %v size %d, want %v %d", i, g.ID.Short(), g.Size, w.ID.Short(), w.Size)
		}
		if !slices.Equal(sortedBlobs(g.Blobs), sortedBlobs(w.Blobs)) {
			t.Fatalf("pack %d: blobs differ:\n got %+v\nwant %+v", i, g.Blobs, w.Blobs)
		}
	}
}

// assertIndexFilesEqual compares index files exactly (order included),
// treating nil and empty blob lists alike.
func assertIndexFilesEqual(t *testing.T, got, want chunk.IndexFile) {
	t.Helper()
	if len(got.Packs) != len(want.Packs) {
		t.Fatalf("%d packs, want %d", len(got.Packs), len(want.Packs))
	}
	for i := range got.Packs {
		g, w := got.Packs[i], want.Packs[i]
		if g.ID != w.ID || g.Size != w.Size || !slices.Equal(g.Blobs, w.Blobs) {
			t.Fatalf("pack %d differs:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func sampleIndexFiles() []chunk.IndexFile {
	r := rand.New(rand.NewPCG(6, 6))
	big := chunk.IndexFile{}
	for range 30 {
		big.Packs = append(big.Packs, makeIndexPack(r, r.IntN(200)))
	}
	extremes := chunk.IndexFile{Packs: []chunk.IndexPack{{
		ID:   randomID(r),
		Size: 1<<32 - 1,
		Blobs: []chunk.PackedBlob{
			{Type: chunk.MetaBlob, ID: randomID(r), Offset: 1<<32 - 1, Length: 1<<32 - 1, RawLength: 1<<32 - 1},
			{Type: 0, ID: chunk.ID{}, Offset: 0, Length: 0, RawLength: 0},
			{Type: 255, ID: randomID(r), Offset: 127, Length: 128, RawLength: 16383},
		},
	}}}
	return []chunk.IndexFile{
		{},
		{Packs: []chunk.IndexPack{{ID: randomID(r)}}},
		{Packs: []chunk.IndexPack{makeIndexPack(r, 1)}},
		extremes,
		big,
	}
}

func TestIndexFileRoundTrip(t *testing.T) {
	c := testCodec(t)
	for i, f := range sampleIndexFiles() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			sealed := chunk.EncodeIndexFile(c, f)
			got, err := chunk.DecodeIndexFile(c, sealed)
			if err != nil {
				t.Fatal(err)
			}
			assertIndexFilesEqual(t, got, f)
		})
	}
}

func TestIndexFileFromIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	ix := chunk.NewIndex()
	for range 10 {
		ix.AddPack(makeIndexPack(r, 30))
	}
	c := testCodec(t)
	f, err := chunk.DecodeIndexFile(c, chunk.EncodeIndexFile(c, chunk.IndexFile{Packs: ix.Packs()}))
	if err != nil {
		t.Fatal(err)
	}
	assertPacksEqual(t, f.Packs, ix.Packs())
}

func decodeIndexNoPanic(t *testing.T, c *chunk.Codec, sealed []byte) (f chunk.IndexFile, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("DecodeIndexFile panicked on %d bytes: %v", len(sealed), r)
		}
	}()
	return chunk.DecodeIndexFile(c, sealed)
}

func TestDecodeIndexFileTruncated(t *testing.T) {
	c := testCodec(t)
	for i, f := range sampleIndexFiles()[:4] {
		sealed := chunk.EncodeIndexFile(c, f)
		for n := 0; n < len(sealed); n++ {
			if _, err := decodeIndexNoPanic(t, c, sealed[:n]); !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("file %d sealed form cut to %d bytes: err = %v, want ErrAuth", i, n, err)
			}
		}
		// Every strict prefix of the plaintext, properly sealed, is a
		// parse error.
		plain, err := c.Open(sealed)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(plain); n++ {
			if _, err := decodeIndexNoPanic(t, c, c.Seal(plain[:n])); err == nil {
				t.Fatalf("file %d plaintext cut to %d of %d bytes parsed", i, n, len(plain))
			}
		}
	}
}

func TestDecodeIndexFileCorrupt(t *testing.T) {
	c := testCodec(t)
	sealed := chunk.EncodeIndexFile(c, sampleIndexFiles()[2])
	for bit := 0; bit < 8*len(sealed); bit++ {
		if _, err := decodeIndexNoPanic(t, c, flipBit(sealed, bit)); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("bit %d flipped: err = %v, want ErrAuth", bit, err)
		}
	}
	if _, err := decodeIndexNoPanic(t, newCodec(t, randomKey(t)), sealed); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("wrong key: err = %v, want ErrAuth", err)
	}

	uv := func(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
	id := bytes.Repeat([]byte{0xab}, 32)
	// version 1, one pack, its id and size; the blob count comes next.
	onePack := uv(append(uv([]byte{1}, 1), id...), 100)
	at := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{onePack}, parts...), nil) }
	tests := []struct {
		name      string
		plain     []byte
		wantCorru bool // must wrap ErrCorruptPack
	}{
		{"empty", nil, false},
		{"version 0", []byte{0, 0}, false},
		{"version 2", []byte{2, 0}, false},
		{"no pack count", []byte{1}, true},
		{"pack count overflows varint", append([]byte{1}, bytes.Repeat([]byte{0xff}, 11)...), true},
		{"huge pack count, no packs", uv([]byte{1}, 1<<62), true},
		{"pack id cut", append(uv([]byte{1}, 1), id[:10]...), true},
		{"no blob count", at(), true},
		{"huge blob count", at(uv(nil, 1<<40)), true},
		{"blob count above file size", at(uv(nil, 1000)), true},
		{"blob cut after type", at(uv(nil, 1), []byte{1}), true},
		{"blob cut in id", at(uv(nil, 1), []byte{1}, id[:5]), true},
		{"blob without lengths", at(uv(nil, 1), []byte{1}, id), true},
		{"blob without raw length", at(uv(nil, 1), []byte{1}, id, uv(nil, 0), uv(nil, 50)), true},
		{"second pack missing", uv(uv(append(uv([]byte{1}, 2), id...), 100), 0), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeIndexNoPanic(t, c, c.Seal(tc.plain))
			if err == nil {
				t.Fatalf("parsed: %+v", f)
			}
			if tc.wantCorru && !errors.Is(err, chunk.ErrCorruptPack) {
				t.Fatalf("err = %v, want ErrCorruptPack", err)
			}
		})
	}
}

// TestIndexManyBlobs fills the index past several pages and table growths,
// with ids that share their first 8 bytes (the bytes the table hashes) as
// well as random ones, and checks every blob is found where it was put.
func TestIndexManyBlobs(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	ix := chunk.NewIndex()
	var want []chunk.Location
	var ids []chunk.ID
	for p := range 300 {
		pack := makeIndexPack(r, 64)
		for i := range pack.Blobs {
			if i%16 == 0 {
				// Same first 8 bytes as the first blob of the first pack:
				// these collide in the table and must be told apart.
				binary.LittleEndian.PutUint64(pack.Blobs[i].ID[:8], 42)
			}
		}
		ix.AddPack(pack)
		for _, b := range pack.Blobs {
			ids = append(ids, b.ID)
			want = append(want, locationOf(pack, b))
		}
		if p == 150 {
			// A pack repeating blobs already indexed: the first location stays.
			dup := chunk.IndexPack{ID: randomID(r), Size: 1 << 20, Blobs: slices.Clone(pack.Blobs[:10])}
			ix.AddPack(dup)
		}
	}
	if ix.Len() != len(ids) {
		t.Fatalf("Len() = %d, want %d", ix.Len(), len(ids))
	}
	for i, id := range ids {
		got, ok := ix.Lookup(id)
		if !ok || got != want[i] {
			t.Fatalf("blob %d: Lookup = %+v, %v; want %+v", i, got, ok, want[i])
		}
	}
	for range 1000 {
		id := randomID(r)
		if ix.Has(id) {
			t.Fatalf("random id %v found", id.Short())
		}
		binary.LittleEndian.PutUint64(id[:8], 42)
		if ix.Has(id) {
			t.Fatalf("colliding id %v found", id.Short())
		}
	}
}
