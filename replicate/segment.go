package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/bufpool"
	"github.com/drctl/drctl/repo"
)

// segmenter walks a disk's blocks in order, compares each block's digest
// with the parent's, and turns runs of changed blocks into items to store:
// short runs whole (one extent blob of exactly the changed bytes), long
// runs through the content-defined chunker. It also writes the new digest
// pages as it leaves each page, so memory does not grow with disk size.
type segmenter struct {
	j     *diskJob
	items chan<- item
	bs    int64
	ps    int64
	small int

	pages      *pageBuilder
	page       int64 // current page, -1 before the first
	parentDig  []uint64
	parentKnow bool
	newDig     []uint64
	// digestsUnknown: some block of the current page was neither read nor
	// covered by the parent's digests.
	digestsUnknown bool

	runStart int64
	runEnd   int64
	runBuf   []byte
	pw       *io.PipeWriter // set while a long run streams to the chunker

	streams     chan stream
	chunkerDone chan error
	chunkPool   *bufpool.Pool
	closeOnce   sync.Once
}

type stream struct {
	off int64
	r   *io.PipeReader
}

func newSegmenter(j *diskJob, items chan<- item, pages *pageBuilder) *segmenter {
	cfg := j.r.Config()
	s := &segmenter{
		j: j, items: items,
		bs: int64(cfg.BlockSize), ps: cfg.PageSize, small: cfg.SmallRun,
		pages:       pages,
		page:        -1,
		runStart:    -1,
		streams:     make(chan stream),
		chunkerDone: make(chan error, 1),
		chunkPool:   bufpool.New(int(cfg.Chunker.MaxSize), 2*j.workers+2),
	}
	s.runBuf = make([]byte, 0, s.small+int(s.bs))
	go func() { s.chunkerDone <- s.chunkLoop(cfg.Chunker) }()
	return s
}

// chunkLoop cuts each long run into content-defined chunks.
func (s *segmenter) chunkLoop(p chunk.Params) error {
	c := chunk.NewChunker(p)
	var failed error
	for st := range s.streams {
		if failed != nil {
			st.r.CloseWithError(failed)
			continue
		}
		c.Reset(st.r)
		off := st.off
		for {
			buf := s.chunkPool.Get()
			data, err := c.Next(*buf)
			if errors.Is(err, io.EOF) {
				s.chunkPool.Put(buf)
				break
			}
			if err != nil {
				failed = fmt.Errorf("chunk run at %d: %w", st.off, err)
				st.r.CloseWithError(failed)
				break
			}
			s.items <- item{off: off, data: data, buf: buf, pool: s.chunkPool}
			off += int64(len(data))
		}
	}
	return failed
}

// enterPage switches to the page holding off, saving the previous page's
// digests.
func (s *segmenter) enterPage(ctx context.Context, off int64) error {
	p := off / s.ps
	if p == s.page {
		return nil
	}
	if err := s.flushPage(ctx); err != nil {
		return err
	}
	s.page = p
	s.digestsUnknown = false
	pEnd := min((p+1)*s.ps, s.j.size)
	s.newDig = make([]uint64, (pEnd-p*s.ps+s.bs-1)/s.bs)
	s.parentDig, s.parentKnow = nil, false
	if par := s.j.parent; par != nil {
		if p >= int64(len(par.Pages)) {
			// The disk grew: the parent had nothing here.
			s.parentKnow = true
		} else if !par.Pages[p].Digests.IsZero() {
			d, err := s.j.r.LoadDigests(ctx, par.Pages[p])
			if err != nil {
				return fmt.Errorf("parent digests of %s page %d: %w", s.j.name, p, err)
			}
			s.parentDig, s.parentKnow = d, true
		} else if par.Pages[p].Map.IsZero() {
			s.parentKnow = true // an all-hole page
		}
	}
	return nil
}

// parentDigest is the parent's digest of block i of the current page, and
// whether it is known.
func (s *segmenter) parentDigest(i int64) (uint64, bool) {
	if !s.parentKnow {
		return 0, false
	}
	if i < int64(len(s.parentDig)) {
		return s.parentDig[i], true
	}
	return 0, true
}

func (s *segmenter) flushPage(ctx context.Context) error {
	if s.page < 0 {
		return nil
	}
	defer func() { s.page = -1 }()
	// The run in progress may continue into the next page; its bytes in
	// this page are already counted as waiting, so the page is built
	// when they are stored.
	if s.digestsUnknown {
		return s.pages.scanned(ctx, s.page, chunk.ID{})
	}
	id, _, err := s.j.w.Save(ctx, chunk.MetaBlob, repo.EncodeDigests(s.newDig))
	if err != nil {
		return fmt.Errorf("store digests of %s page %d: %w", s.j.name, s.page, err)
	}
	return s.pages.scanned(ctx, s.page, id)
}

// data processes a read buffer.
func (s *segmenter) data(ctx context.Context, off int64, data []byte, digests []uint64) error {
	for i, d := range digests {
		bo := off + int64(i)*s.bs
		if err := s.enterPage(ctx, bo); err != nil {
			return err
		}
		blk := data[int64(i)*s.bs : min(int64(i+1)*s.bs, int64(len(data)))]
		bi := (bo - s.page*s.ps) / s.bs
		s.newDig[bi] = d
		pd, known := s.parentDigest(bi)
		switch {
		case known && pd == d:
			if err := s.endRun(ctx); err != nil {
				return err
			}
		case d == 0:
			if err := s.endRun(ctx); err != nil {
				return err
			}
			s.addHole(bo, int64(len(blk)))
		default:
			if err := s.appendRun(ctx, bo, blk); err != nil {
				return err
			}
		}
	}
	return nil
}

// gap processes a range the source did not read: a hole, or data
// unchanged since the parent.
func (s *segmenter) gap(ctx context.Context, from, to int64) error {
	if s.j.src.GapsUnchanged() {
		return s.unchanged(ctx, from, to)
	}
	return s.hole(ctx, from, to)
}

// unchanged processes a range known not to have changed since the parent:
// its digests carry over; without the parent's digests the page's new
// digests are unknown, and the next scan of the page reads it whole.
func (s *segmenter) unchanged(ctx context.Context, from, to int64) error {
	if err := s.endRun(ctx); err != nil {
		return err
	}
	for off := from; off < to; {
		// A whole page that did not change keeps the parent's digest
		// blob without reading it: a no-change snapshot of a large disk
		// costs no I/O per page.
		if p := off / s.ps; off == p*s.ps && p != s.page && s.parentPageSame(p) && to >= min((p+1)*s.ps, s.j.size) {
			if err := s.flushPage(ctx); err != nil {
				return err
			}
			s.page = -1
			end := min((p+1)*s.ps, s.j.size)
			if err := s.pages.scanned(ctx, p, s.j.parent.Pages[p].Digests); err != nil {
				return err
			}
			s.j.counters.BytesScanned.Add(end - off)
			off = end
			continue
		}
		if err := s.enterPage(ctx, off); err != nil {
			return err
		}
		end := min(to, (s.page+1)*s.ps)
		if !s.parentKnow {
			s.digestsUnknown = true
		} else {
			for b := off; b < end; b += s.bs {
				i := (b - s.page*s.ps) / s.bs
				s.newDig[i], _ = s.parentDigest(i)
			}
		}
		s.j.counters.BytesScanned.Add(end - off)
		off = end
	}
	return nil
}

// parentPageSame reports whether the parent has page p covering the same
// range as this disk's page p.
func (s *segmenter) parentPageSame(p int64) bool {
	par := s.j.parent
	return par != nil && p < int64(len(par.Pages)) && min((p+1)*s.ps, par.Size) == min((p+1)*s.ps, s.j.size)
}

// hole processes an unallocated range [from, to).
func (s *segmenter) hole(ctx context.Context, from, to int64) error {
	if err := s.endRun(ctx); err != nil {
		return err
	}
	for off := from; off < to; {
		if err := s.enterPage(ctx, off); err != nil {
			return err
		}
		end := min(to, (s.page+1)*s.ps)
		if !s.parentKnow {
			s.addHole(off, end-off)
		} else {
			for b := off; b < end; b += s.bs {
				if pd, _ := s.parentDigest((b - s.page*s.ps) / s.bs); pd != 0 {
					s.addHole(b, min(s.bs, end-b))
				}
			}
		}
		s.j.counters.BytesScanned.Add(end - off)
		off = end
	}
	return nil
}

func (s *segmenter) addHole(off, n int64) { s.pages.hole(off, n) }

func (s *segmenter) appendRun(ctx context.Context, off int64, blk []byte) error {
	if s.runStart >= 0 && off != s.runEnd {
		if err := s.endRun(ctx); err != nil {
			return err
		}
	}
	if s.runStart < 0 {
		s.runStart = off
	}
	s.runEnd = off + int64(len(blk))
	s.pages.changed(off, int64(len(blk)))
	s.j.counters.BytesChanged.Add(int64(len(blk)))
	if s.pw != nil {
		return s.write(blk)
	}
	s.runBuf = append(s.runBuf, blk...)
	if len(s.runBuf) <= s.small {
		return nil
	}
	// A long run: stream it through the chunker.
	r, w := io.Pipe()
	select {
	case s.streams <- stream{off: s.runStart, r: r}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.pw = w
	err := s.write(s.runBuf)
	s.runBuf = s.runBuf[:0]
	return err
}

func (s *segmenter) write(b []byte) error {
	if _, err := s.pw.Write(b); err != nil {
		return fmt.Errorf("feed chunker: %w", err)
	}
	return nil
}

func (s *segmenter) endRun(ctx context.Context) error {
	if s.runStart < 0 {
		return nil
	}
	start := s.runStart
	s.runStart = -1
	if s.pw != nil {
		err := s.pw.Close()
		s.pw = nil
		return err
	}
	data := make([]byte, len(s.runBuf))
	copy(data, s.runBuf)
	s.runBuf = s.runBuf[:0]
	select {
	case s.items <- item{off: start, data: data}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finish ends the last run, saves the last digest page and waits for the
// chunker.
func (s *segmenter) finish(ctx context.Context) error {
	if err := s.endRun(ctx); err != nil {
		return err
	}
	if err := s.flushPage(ctx); err != nil {
		return err
	}
	return s.close()
}

// close stops the chunker goroutine; safe to call more than once.
func (s *segmenter) close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.pw != nil {
			s.pw.CloseWithError(errors.New("replication stopped"))
			s.pw = nil
		}
		close(s.streams)
		err = <-s.chunkerDone
	})
	return err
}
