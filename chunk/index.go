package chunk

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
)

// Location is where a blob is stored.
type Location struct {
	Pack      ID
	Type      BlobType
	Offset    uint32
	Length    uint32
	RawLength uint32
}

// indexEntry is one blob: 52 bytes, where a map entry of the same
// content costs about 115 once the map's slack is counted.
type indexEntry struct {
	id        ID
	pack      uint32 // position in Index.packs
	offset    uint32
	length    uint32
	rawLength uint32
	typ       BlobType
}

// entryPageBits sizes the pages of entries: 4096 entries (208 KiB) each,
// so that growing never copies the entries already stored.
const entryPageBits = 12

// Index answers "do we have this blob, and where is it". Safe for
// concurrent use. A blob stored in several packs (two writers raced, or an
// interrupted run was repeated) keeps the first location seen; prune
// removes the duplicates.
//
// Every open repository holds its whole index (writers deduplicate
// against it), so its size per blob is what a repository costs in memory:
// entries live in fixed pages and an open-addressing table of 32-bit slots
// points at them, about 60 bytes a blob against 115 for a Go map.
type Index struct {
	mu        sync.RWMutex
	packs     []IndexPack
	packIndex map[ID]uint32
	pages     [][]indexEntry
	n         int      // entries stored
	slots     []uint32 // entry number + 1; 0 is empty; len is a power of 2
}

// NewIndex makes an empty index.
func NewIndex() *Index {
	return &Index{packIndex: map[ID]uint32{}}
}

func (ix *Index) entry(i uint32) *indexEntry {
	return &ix.pages[i>>entryPageBits][i&(1<<entryPageBits-1)]
}

// home is the first slot to probe for id. Blob ids are keyed hashes, so
// any 8 bytes of them are uniform; the multiply keeps a table of any size
// safe even if they were not.
func (ix *Index) home(id ID) uint64 {
	h := binary.LittleEndian.Uint64(id[:8]) * 0x9E3779B97F4A7C15
	return h >> (64 - bits.TrailingZeros(uint(len(ix.slots))))
}

// find returns the entry of id, or nil.
func (ix *Index) find(id ID) *indexEntry {
	if len(ix.slots) == 0 {
		return nil
	}
	mask := uint64(len(ix.slots) - 1)
	for i := ix.home(id); ; i = (i + 1) & mask {
		s := ix.slots[i]
		if s == 0 {
			return nil
		}
		if e := ix.entry(s - 1); e.id == id {
			return e
		}
	}
}

// insert stores e, which must not be present.
func (ix *Index) insert(e indexEntry) {
	// At most 3/4 full: misses (every new blob is one) then probe about
	// 8 slots at worst and 2.5 on average.
	if (ix.n+1)*4 > len(ix.slots)*3 {
		ix.grow()
	}
	if ix.n == math.MaxUint32-1 {
		panic("chunk: index full") // 4 billion blobs: 2 PiB of 512 KiB chunks
	}
	n := uint32(ix.n)
	if int(n>>entryPageBits) == len(ix.pages) {
		ix.pages = append(ix.pages, make([]indexEntry, 1<<entryPageBits))
	}
	*ix.entry(n) = e
	ix.n++
	ix.place(e.id, n+1)
}

func (ix *Index) place(id ID, slot uint32) {
	mask := uint64(len(ix.slots) - 1)
	i := ix.home(id)
	for ix.slots[i] != 0 {
		i = (i + 1) & mask
	}
	ix.slots[i] = slot
}

func (ix *Index) grow() {
	size := max(2*len(ix.slots), 1024)
	ix.slots = make([]uint32, size)
	for i := range uint32(ix.n) {
		ix.place(ix.entry(i).id, i+1)
	}
}

// AddPack records a pack and its blobs.
func (ix *Index) AddPack(p IndexPack) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.packIndex[p.ID]; ok {
		return
	}
	n := uint32(len(ix.packs))
	ix.packs = append(ix.packs, IndexPack{ID: p.ID, Size: p.Size, Blobs: nil})
	ix.packIndex[p.ID] = n
	for _, b := range p.Blobs {
		if ix.find(b.ID) != nil {
			continue
		}
		ix.insert(indexEntry{id: b.ID, pack: n, typ: b.Type, offset: b.Offset, length: b.Length, rawLength: b.RawLength})
	}
}

// Lookup returns a blob's location.
func (ix *Index) Lookup(id ID) (Location, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	e := ix.find(id)
	if e == nil {
		return Location{}, false
	}
	return Location{Pack: ix.packs[e.pack].ID, Type: e.typ, Offset: e.offset, Length: e.length, RawLength: e.rawLength}, true
}

// Has reports whether the blob is indexed.
func (ix *Index) Has(id ID) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.find(id) != nil
}

// PackSize returns the recorded size of a pack.
func (ix *Index) PackSize(id ID) (uint32, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n, ok := ix.packIndex[id]
	if !ok {
		return 0, false
	}
	return ix.packs[n].Size, true
}

// Len is the number of distinct blobs.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.n
}

// Packs lists every pack with the blobs whose first location it is.
func (ix *Index) Packs() []IndexPack {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]IndexPack, len(ix.packs))
	for i, p := range ix.packs {
		out[i] = IndexPack{ID: p.ID, Size: p.Size}
	}
	for i := range uint32(ix.n) {
		e := ix.entry(i)
		out[e.pack].Blobs = append(out[e.pack].Blobs, PackedBlob{Type: e.typ, ID: e.id, Offset: e.offset, Length: e.length, RawLength: e.rawLength})
	}
	for _, p := range out {
		slices.SortFunc(p.Blobs, func(a, b PackedBlob) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	return out
}

// IndexPack is one pack in an index file.
type IndexPack struct {
	ID    ID
	Size  uint32
	Blobs []PackedBlob
}

// IndexFile is the content of one index object: the packs one writer
// uploaded.
type IndexFile struct {
	Packs []IndexPack
}

const indexVersion byte = 1

// EncodeIndexFile serialises and seals an index file.
func EncodeIndexFile(c *Codec, f IndexFile) []byte {
	b := []byte{indexVersion}
	b = binary.AppendUvarint(b, uint64(len(f.Packs)))
	for _, p := range f.Packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, uint64(p.Size))
		b = binary.AppendUvarint(b, uint64(len(p.Blobs)))
		for _, bl := range p.Blobs {
			b = append(b, byte(bl.Type))
			b = append(b, bl.ID[:]...)
			b = binary.AppendUvarint(b, uint64(bl.Offset))
			b = binary.AppendUvarint(b, uint64(bl.Length))
			b = binary.AppendUvarint(b, uint64(bl.RawLength))
		}
	}
	return c.Seal(b)
}

// DecodeIndexFile opens and parses an index file.
func DecodeIndexFile(c *Codec, sealed []byte) (IndexFile, error) {
	b, err := c.Open(sealed)
	if err != nil {
		return IndexFile{}, fmt.Errorf("open index: %w", err)
	}
	r := &byteReader{b: b}
	if v := r.byte(); v != indexVersion {
		return IndexFile{}, fmt.Errorf("index format version %d is not supported", v)
	}
	var f IndexFile
	np := r.uvarint()
	for i := uint64(0); i < np && r.err == nil; i++ {
		var p IndexPack
		r.read(p.ID[:])
		p.Size = r.uint32()
		nb := r.uvarint()
		if nb > uint64(len(b)) {
			return IndexFile{}, fmt.Errorf("index lists %d blobs in a %d-byte file: %w", nb, len(b), ErrCorruptPack)
		}
		p.Blobs = make([]PackedBlob, 0, nb)
		for j := uint64(0); j < nb && r.err == nil; j++ {
			var bl PackedBlob
			bl.Type = BlobType(r.byte())
			r.read(bl.ID[:])
			bl.Offset = r.uint32()
			bl.Length = r.uint32()
			bl.RawLength = r.uint32()
			p.Blobs = append(p.Blobs, bl)
		}
		f.Packs = append(f.Packs, p)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the last pack: %w", len(r.b), ErrCorruptPack)
	}
	if r.err != nil {
		return IndexFile{}, fmt.Errorf("parse index: %w", r.err)
	}
	return f, nil
}

// byteReader parses the varint formats; the first error sticks.
type byteReader struct {
	b   []byte
	err error
}

func (r *byteReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("truncated data: %w", ErrCorruptPack)
	}
}

func (r *byteReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *byteReader) read(dst []byte) {
	if r.err != nil || len(r.b) < len(dst) {
		r.fail()
		return
	}
	copy(dst, r.b)
	r.b = r.b[len(dst):]
}

func (r *byteReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *byteReader) uint32() uint32 {
	v := r.uvarint()
	if v > math.MaxUint32 && r.err == nil {
		r.err = fmt.Errorf("value %d exceeds 32 bits: %w", v, ErrCorruptPack)
	}
	return uint32(v)
}
