package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/bufpool"
	"github.com/drctl/drctl/repo"
)

// readBufSize is how much one read covers at most; a multiple of every
// sane block size. readAhead bounds the bytes read but not yet segmented,
// and fetchWorkers the reads in flight.
const (
	readBufSize  = 1 << 20
	readAhead    = 8 << 20
	fetchWorkers = 16
)

// diskJob is the work of replicating one disk.
type diskJob struct {
	r      *repo.Repository
	w      *repo.Writer
	name   string
	src    diskSource
	size   int64
	parent *repo.Disk // same-named disk of the parent snapshot, or nil
	// changeSource and note go into the manifest: how changes were found,
	// and why a fallback was taken.
	changeSource        string
	note                string
	bitmap              string // live VM: the bitmap recording changes since this snapshot
	node                string // live VM: the block node read
	format, bus, serial string // live VM: how the disk is attached, for the replica
	counters            *Counters
	log                 *slog.Logger
	workers             int
}

// readBuf is a buffer of the scan and its block digests.
type readBuf struct {
	off     int64
	data    []byte   // block-aligned start; len may end short at EOF
	buf     *[]byte  // pooled backing of data
	digests []uint64 // one per block
	done    chan struct{}
}

// item is data to store as one blob at a disk offset.
type item struct {
	off  int64
	data []byte
	buf  *[]byte // pooled backing of data, returned to pool after use
	pool *bufpool.Pool
}

func (j *diskJob) run(ctx context.Context) (repo.Disk, error) {
	cfg := j.r.Config()
	bs := int64(cfg.BlockSize)
	ranges, err := j.src.Ranges(ctx)
	if err != nil {
		return repo.Disk{}, err
	}

	g, gctx := errgroup.WithContext(ctx)

	// Stage 1: cut the ranges into reads, in disk order. Reads are
	// issued ahead, up to readAhead bytes, and done by fetch workers in
	// parallel: a dirty bitmap's ranges are thousands of scattered 4 KiB
	// blocks, and one NBD round trip at a time would leave the disk idle.
	bufs := make(chan *readBuf, 64)
	fetchJobs := make(chan *readBuf, 64)
	bufPool := bufpool.New(readBufSize, 12)
	ahead := semaphore.NewWeighted(readAhead)
	g.Go(func() error {
		defer close(bufs)
		defer close(fetchJobs)
		prevEnd := int64(0)
		for _, rg := range ranges {
			start := max(rg[0]/bs*bs, prevEnd)
			end := min((rg[1]+bs-1)/bs*bs, j.size)
			for off := start; off < end; {
				n := min(int64(readBufSize), end-off)
				if err := ahead.Acquire(gctx, n); err != nil {
					return err
				}
				rb := &readBuf{off: off, done: make(chan struct{})}
				if n == readBufSize {
					rb.buf = bufPool.Get()
					rb.data = *rb.buf
				} else {
					rb.data = make([]byte, n)
				}
				select {
				case bufs <- rb:
				case <-gctx.Done():
					return gctx.Err()
				}
				select {
				case fetchJobs <- rb:
				case <-gctx.Done():
					return gctx.Err()
				}
				off += n
			}
			prevEnd = max(prevEnd, end)
		}
		return nil
	})

	// Stage 2: read and compute block digests, in parallel, out of order.
	for range fetchWorkers {
		g.Go(func() error {
			dg := j.r.Codec().Key().NewBlockDigester()
			for rb := range fetchJobs {
				if err := j.src.ReadAt(gctx, rb.data, rb.off); err != nil {
					return err
				}
				j.counters.BytesRead.Add(int64(len(rb.data)))
				nb := (int64(len(rb.data)) + bs - 1) / bs
				rb.digests = make([]uint64, nb)
				for i := int64(0); i < nb; i++ {
					blk := rb.data[i*bs : min((i+1)*bs, int64(len(rb.data)))]
					rb.digests[i] = dg.Digest(blk)
				}
				close(rb.done)
			}
			return nil
		})
	}

	// Stage 4: store blobs (chunk id, compress, encrypt, pack).
	items := make(chan item, j.workers)
	pages := newPageBuilder(j, cfg.PageSize)
	// The store stage outlives the errgroup (whose context ends with
	// Wait), so it has its own context, cancelled when the group fails.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	var storeWG sync.WaitGroup
	storeErr := make(chan error, j.workers)
	for range j.workers {
		storeWG.Add(1)
		go func() {
			defer storeWG.Done()
			for it := range items {
				id, _, err := j.w.Save(sctx, chunk.DataBlob, it.data)
				n := int64(len(it.data))
				if it.pool != nil {
					it.pool.Put(it.buf)
				}
				if err != nil {
					storeErr <- fmt.Errorf("store data of %s at %d: %w", j.name, it.off, err)
					// Drain so the producers never block.
					for it := range items {
						if it.pool != nil {
							it.pool.Put(it.buf)
						}
					}
					return
				}
				if err := pages.stored(sctx, repo.Extent{Off: it.off, Len: n, Blob: id}); err != nil {
					storeErr <- err
					for it := range items {
						if it.pool != nil {
							it.pool.Put(it.buf)
						}
					}
					return
				}
			}
		}()
	}

	// Stage 3: compare digests with the parent's, cut changed runs, chunk
	// the long ones.
	seg := newSegmenter(j, items, pages)
	g.Go(func() error {
		defer seg.close()
		pos := int64(0)
		for rb := range bufs {
			select {
			case <-rb.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if rb.off > pos {
				if err := seg.gap(gctx, pos, rb.off); err != nil {
					return err
				}
			}
			if err := seg.data(gctx, rb.off, rb.data, rb.digests); err != nil {
				return err
			}
			pos = rb.off + int64(len(rb.data))
			j.counters.BytesScanned.Add(int64(len(rb.data)))
			bufPool.Put(rb.buf)
			ahead.Release(int64(len(rb.data)))
		}
		if pos < j.size {
			if err := seg.gap(gctx, pos, j.size); err != nil {
				return err
			}
		}
		return seg.finish(gctx)
	})

	err = g.Wait()
	if err != nil {
		scancel()
	}
	seg.close()
	close(items)
	storeWG.Wait()
	close(storeErr)
	if err == nil {
		err = <-storeErr
	}
	if err != nil {
		return repo.Disk{}, err
	}
	return pages.disk()
}

// parentUnreadable says why the parent's map of a disk cannot be used,
// or "" when it can: every map and digest page must be in the index. A
// damaged index file hides them; the disk is then read in full rather
// than the replication failing, and the manifest says so. ix must be
// fresh (RefreshIndex): a prune in this process may have rebuilt the
// cached one from a listing older than the parent's commit.
func parentUnreadable(ix *chunk.Index, d *repo.Disk) string {
	var zero chunk.ID
	for i, p := range d.Pages {
		for _, id := range []chunk.ID{p.Map, p.Digests} {
			if id != zero && !ix.Has(id) {
				return fmt.Sprintf("page %d of the parent's map (blob %s) is not in the index (a damaged index file? run drctl verify): read in full", i, id.Short())
			}
		}
	}
	return ""
}
