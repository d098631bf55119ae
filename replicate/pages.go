package replicate

import (
	"context"
	"fmt"
	"sync"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/repo"
)

// pageBuilder makes a disk's map pages while the scan goes on: a page is
// built as soon as the scan has passed it and every changed byte in it has
// been stored, and its extents are then dropped. So memory holds the
// extents of the pages in flight, not of the whole disk.
//
// A page with changes is the parent's page overlaid with this run's
// extents and holes; a page without changes keeps the parent's blobs and is
// never read.
type pageBuilder struct {
	j      *diskJob
	ps     int64
	refs   []repo.PageRef
	mu     sync.Mutex
	passed int64           // pages [0, passed) are fully scanned
	wait   map[int64]int64 // changed bytes handed on for storage, not stored yet
	dirty  map[int64]bool
	upd    map[int64][]repo.Extent
	holes  map[int64][]repo.Range
	digest map[int64]chunk.ID
	built  map[int64]bool
}

func newPageBuilder(j *diskJob, pageSize int64) *pageBuilder {
	n := (j.size + pageSize - 1) / pageSize
	return &pageBuilder{
		j: j, ps: pageSize, refs: make([]repo.PageRef, n),
		wait: map[int64]int64{}, dirty: map[int64]bool{}, upd: map[int64][]repo.Extent{},
		holes: map[int64][]repo.Range{}, digest: map[int64]chunk.ID{}, built: map[int64]bool{},
	}
}

// pagesOf calls fn for each page piece of [off, off+n).
func (b *pageBuilder) pagesOf(off, n int64, fn func(p, off, n int64)) {
	for n > 0 {
		p := off / b.ps
		end := min(off+n, (p+1)*b.ps)
		fn(p, off, end-off)
		n -= end - off
		off = end
	}
}

// changed records bytes that the scan handed on for storage.
func (b *pageBuilder) changed(off, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pagesOf(off, n, func(p, _, n int64) {
		b.wait[p] += n
		b.dirty[p] = true
	})
}

// hole records a range that became a hole.
func (b *pageBuilder) hole(off, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pagesOf(off, n, func(p, off, n int64) {
		b.dirty[p] = true
		hs := b.holes[p]
		if k := len(hs); k > 0 && hs[k-1].End() == off {
			hs[k-1].Len += n
		} else {
			b.holes[p] = append(hs, repo.Range{Off: off, Len: n})
		}
	})
}

// stored records an extent whose blob is saved, and builds the pages it
// completed.
func (b *pageBuilder) stored(ctx context.Context, e repo.Extent) error {
	var ready []int64
	b.mu.Lock()
	b.pagesOf(e.Off, e.Len, func(p, off, n int64) {
		b.upd[p] = append(b.upd[p], repo.Extent{Off: off, Len: n, Blob: e.Blob, BlobOff: e.BlobOff + off - e.Off})
		b.wait[p] -= n
		if b.readyLocked(p) {
			ready = append(ready, p)
		}
	})
	b.mu.Unlock()
	return b.buildAll(ctx, ready)
}

// scanned records that the scan left page p, whose digests are in blob
// digests, and builds it if nothing of it is still being stored.
func (b *pageBuilder) scanned(ctx context.Context, p int64, digests chunk.ID) error {
	var ready []int64
	b.mu.Lock()
	b.digest[p] = digests
	b.passed = p + 1
	if b.readyLocked(p) {
		ready = append(ready, p)
	}
	b.mu.Unlock()
	return b.buildAll(ctx, ready)
}

// readyLocked claims page p for building if it is complete.
func (b *pageBuilder) readyLocked(p int64) bool {
	if p >= b.passed || b.wait[p] != 0 || b.built[p] {
		return false
	}
	b.built[p] = true
	delete(b.wait, p)
	return true
}

func (b *pageBuilder) buildAll(ctx context.Context, pages []int64) error {
	for _, p := range pages {
		if err := b.build(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (b *pageBuilder) build(ctx context.Context, p int64) error {
	b.mu.Lock()
	dirty, upd, holes, digests := b.dirty[p], b.upd[p], b.holes[p], b.digest[p]
	delete(b.dirty, p)
	delete(b.upd, p)
	delete(b.holes, p)
	delete(b.digest, p)
	b.mu.Unlock()

	j := b.j
	pStart, pEnd := p*b.ps, min((p+1)*b.ps, j.size)
	var base []repo.Extent
	if par := j.parent; par != nil && p < int64(len(par.Pages)) {
		parEnd := min((p+1)*b.ps, par.Size)
		if !dirty && parEnd == pEnd {
			b.refs[p] = par.Pages[p]
			return nil
		}
		var err error
		base, err = j.r.LoadMapPage(ctx, par.Pages[p], pStart, parEnd)
		if err != nil {
			return fmt.Errorf("parent map of %s: %w", j.name, err)
		}
		base = clip(base, pEnd)
	}
	exts := repo.Overlay(base, upd, holes)
	ref := repo.PageRef{Digests: digests}
	for _, e := range exts {
		ref.Allocated += e.Len
	}
	if len(exts) > 0 {
		var err error
		ref.Map, _, err = j.w.Save(ctx, chunk.MetaBlob, repo.EncodeMapPage(exts, pStart))
		if err != nil {
			return fmt.Errorf("store map page %d of %s: %w", p, j.name, err)
		}
	}
	b.refs[p] = ref
	return nil
}

// disk returns the finished disk, checking that every page was built.
func (b *pageBuilder) disk() (repo.Disk, error) {
	j := b.j
	d := repo.Disk{
		Name: j.name, Source: j.src.Describe(), Size: j.size, PageSize: b.ps, BlockSize: j.r.Config().BlockSize,
		Pages: b.refs, ChangeSource: j.changeSource, Note: j.note, Bitmap: j.bitmap, Node: j.node,
		Format: j.format, Bus: j.bus, Serial: j.serial,
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for p := range b.refs {
		if !b.built[int64(p)] {
			return repo.Disk{}, fmt.Errorf("disk %s: map page %d was never completed (internal error; nothing was committed)", j.name, p)
		}
		d.Allocated += b.refs[p].Allocated
	}
	return d, nil
}

// clip drops the parts of extents at or past end (a disk that shrank).
func clip(exts []repo.Extent, end int64) []repo.Extent {
	out := exts[:0]
	for _, e := range exts {
		if e.Off >= end {
			break
		}
		if e.End() > end {
			e.Len = end - e.Off
		}
		out = append(out, e)
	}
	return out
}
