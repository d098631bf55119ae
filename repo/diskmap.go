package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/drctl/drctl/chunk"
)

// Extent maps a range of a disk onto a range of a blob's plaintext.
// Disk ranges not covered by any extent read as zeros (holes).
type Extent struct {
	Off     int64    // disk offset
	Len     int64    // bytes
	Blob    chunk.ID // blob holding the data
	BlobOff int64    // offset of the data inside the blob's plaintext
}

// End is the disk offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// Range is a disk range.
type Range struct{ Off, Len int64 }

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// PageRef names the two blobs of one map page. A zero Map means the page is
// one hole; a zero Digests means no block digests were recorded (the next
// file scan of that page reads everything as changed).
type PageRef struct {
	Map       chunk.ID `json:"m"`
	Digests   chunk.ID `json:"d"`
	Allocated int64    `json:"a,omitempty"` // bytes mapped to data in this page
}

const mapPageVersion byte = 1

// EncodeMapPage serialises the sorted extents of one page. Blob ids are
// stored once in a table, so pages of many small extents stay compact.
func EncodeMapPage(exts []Extent, pageStart int64) []byte {
	table := map[chunk.ID]uint64{}
	var ids []chunk.ID
	for _, e := range exts {
		if _, ok := table[e.Blob]; !ok {
			table[e.Blob] = uint64(len(ids))
			ids = append(ids, e.Blob)
		}
	}
	b := []byte{mapPageVersion}
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(exts)))
	prev := pageStart
	for _, e := range exts {
		b = binary.AppendUvarint(b, uint64(e.Off-prev))
		b = binary.AppendUvarint(b, uint64(e.Len))
		b = binary.AppendUvarint(b, table[e.Blob])
		b = binary.AppendUvarint(b, uint64(e.BlobOff))
		prev = e.End()
	}
	return b
}

// DecodeMapPage parses a map page and checks it is well formed: extents
// sorted, non-overlapping and inside [pageStart, pageEnd).
func DecodeMapPage(b []byte, pageStart, pageEnd int64) ([]Extent, error) {
	if len(b) == 0 || b[0] != mapPageVersion {
		return nil, fmt.Errorf("map page: unknown version: %w", ErrDamaged)
	}
	rest := b[1:]
	next := func() (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, fmt.Errorf("map page truncated: %w", ErrDamaged)
		}
		rest = rest[n:]
		return v, nil
	}
	nids, err := next()
	if err != nil {
		return nil, err
	}
	if nids > uint64(len(rest))/32 {
		return nil, fmt.Errorf("map page lists %d blobs in %d bytes: %w", nids, len(rest), ErrDamaged)
	}
	ids := make([]chunk.ID, nids)
	for i := range ids {
		copy(ids[i][:], rest[:32])
		rest = rest[32:]
	}
	n, err := next()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(rest)) {
		return nil, fmt.Errorf("map page lists %d extents in %d bytes: %w", n, len(rest), ErrDamaged)
	}
	exts := make([]Extent, 0, n)
	prev := pageStart
	for i := uint64(0); i < n; i++ {
		var f [4]uint64
		for j := range f {
			if f[j], err = next(); err != nil {
				return nil, err
			}
		}
		if f[2] >= nids {
			return nil, fmt.Errorf("map page extent %d names blob %d of %d: %w", i, f[2], nids, ErrDamaged)
		}
		e := Extent{Off: prev + int64(f[0]), Len: int64(f[1]), Blob: ids[f[2]], BlobOff: int64(f[3])}
		if e.Len <= 0 || e.End() > pageEnd || e.Off < prev {
			return nil, fmt.Errorf("map page extent %d [%d,%d) is out of order or outside the page: %w", i, e.Off, e.End(), ErrDamaged)
		}
		exts = append(exts, e)
		prev = e.End()
	}
	return exts, nil
}

// EncodeDigests serialises a page's block digests.
func EncodeDigests(d []uint64) []byte {
	b := make([]byte, 8*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return b
}

// DecodeDigests parses a page's block digests.
func DecodeDigests(b []byte) ([]uint64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("digest page of %d bytes: %w", len(b), ErrDamaged)
	}
	d := make([]uint64, len(b)/8)
	for i := range d {
		d[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return d, nil
}

// Overlay returns base with the ranges of upd and holes replaced: upd's
// extents take their place, holes become unmapped. upd and holes must not
// overlap each other; base must be sorted and non-overlapping.
func Overlay(base, upd []Extent, holes []Range) []Extent {
	cuts := make([]Range, 0, len(upd)+len(holes))
	for _, e := range upd {
		cuts = append(cuts, Range{e.Off, e.Len})
	}
	cuts = append(cuts, holes...)
	sort.Slice(cuts, func(i, j int) bool { return cuts[i].Off < cuts[j].Off })

	out := make([]Extent, 0, len(base)+2*len(upd))
	c := 0
	for _, e := range base {
		for c < len(cuts) && cuts[c].End() <= e.Off {
			c++
		}
		// Emit the pieces of e not covered by cuts[c:]…
		cur := e
		for k := c; k < len(cuts) && cuts[k].Off < cur.End() && cur.Len > 0; k++ {
			cut := cuts[k]
			if cut.Off > cur.Off {
				out = append(out, Extent{Off: cur.Off, Len: cut.Off - cur.Off, Blob: cur.Blob, BlobOff: cur.BlobOff})
			}
			if cut.End() >= cur.End() {
				cur.Len = 0
				break
			}
			skip := cut.End() - cur.Off
			if skip > 0 {
				cur = Extent{Off: cur.Off + skip, Len: cur.Len - skip, Blob: cur.Blob, BlobOff: cur.BlobOff + skip}
			}
		}
		if cur.Len > 0 {
			out = append(out, cur)
		}
	}
	out = append(out, upd...)
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	return out
}

// SplitPages cuts sorted extents at page boundaries and groups them by page
// number.
func SplitPages(exts []Extent, pageSize int64) map[int64][]Extent {
	out := map[int64][]Extent{}
	for _, e := range exts {
		for e.Len > 0 {
			p := e.Off / pageSize
			end := min(e.End(), (p+1)*pageSize)
			n := end - e.Off
			out[p] = append(out[p], Extent{Off: e.Off, Len: n, Blob: e.Blob, BlobOff: e.BlobOff})
			e = Extent{Off: end, Len: e.Len - n, Blob: e.Blob, BlobOff: e.BlobOff + n}
		}
	}
	return out
}

// LoadMapPage reads one page's extents (nil for a hole page).
func (r *Repository) LoadMapPage(ctx context.Context, ref PageRef, pageStart, pageEnd int64) ([]Extent, error) {
	if ref.Map.IsZero() {
		return nil, nil
	}
	b, err := r.LoadBlob(ctx, ref.Map)
	if err != nil {
		return nil, fmt.Errorf("load map page at %d: %w", pageStart, err)
	}
	return DecodeMapPage(b, pageStart, pageEnd)
}

// LoadDigests reads one page's block digests (nil if none were recorded).
func (r *Repository) LoadDigests(ctx context.Context, ref PageRef) ([]uint64, error) {
	if ref.Digests.IsZero() {
		return nil, nil
	}
	b, err := r.LoadBlob(ctx, ref.Digests)
	if err != nil {
		return nil, fmt.Errorf("load block digests: %w", err)
	}
	return DecodeDigests(b)
}
