package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/bufpool"
	"github.com/drctl/drctl/targets"
)

// WriterStats count what a Writer stored.
type WriterStats struct {
	BlobsNew    int64 `json:"blobs_new"`
	BytesNew    int64 `json:"bytes_new"`    // plaintext bytes of new blobs
	BytesStored int64 `json:"bytes_stored"` // pack bytes written (compressed, encrypted, headers)
	Packs       int64 `json:"packs"`
	IndexFiles  int64 `json:"index_files"`
}

// indexEvery is how many uploaded packs are indexed at once. Indexing as
// uploads go means a run killed half way leaves packs that the next run
// finds in the index and does not upload again.
const indexEvery = 4

// Writer stores blobs into packs, uploads them and indexes them. Save may be
// called from many goroutines; Close waits for every upload and writes the
// last index file, after which every saved blob is safe to reference from a
// snapshot manifest; Commit then writes the manifest.
//
// A Writer holds a lease (leases/<id>) from NewWriter until Commit,
// Release or Abort, renewed in the background: while it lasts, prune does
// not delete a pack the writer may have deduplicated against.
type Writer struct {
	r     *Repository
	ix    *chunk.Index
	cv    *condemnedView
	lease *heldLease
	pctx  context.Context // NewWriter's, for the lease release of Abort

	mu      sync.Mutex
	seen    map[chunk.ID]struct{}
	packers map[chunk.BlobType]*chunk.Packer
	pending []chunk.IndexPack
	closed  bool
	durable bool // Close succeeded

	uploads  chan packJob
	wg       sync.WaitGroup
	errOnce  sync.Once
	err      error
	ctx      context.Context
	cancel   context.CancelFunc
	packPool *bufpool.Pool
	packBufs map[chunk.BlobType]*[]byte // pooled backing of each open data packer
	encPool  sync.Pool                  // encode output, copied into a pack right away
	stats    WriterStats
	sizeHint int
}

// NewWriter starts a writer; purpose says what for (it shows in the
// lease, e.g. "replicate vm1"). The caller must Commit, Release or Abort
// it.
//
// The lease is taken before the index is loaded, and names the condemned
// records that exist by then, which the writer reads next: whatever a
// prune condemns later, the writer may rely on, and the lease keeps
// that prune from sweeping it.
func (r *Repository) NewWriter(ctx context.Context, purpose string) (*Writer, error) {
	records, err := r.listCondemned(ctx)
	if err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	lease, err := r.takeLease(ctx, purpose, records)
	if err != nil {
		return nil, fmt.Errorf("new writer: %w", err)
	}
	ix, cv, err := r.refreshWithCondemned(ctx)
	if err != nil {
		if rerr := lease.release(context.WithoutCancel(ctx)); rerr != nil {
			r.log.Warn("could not release the lease of a writer that failed to start (it expires)", "err", rerr)
		}
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Writer{
		r: r, ix: ix, cv: cv, lease: lease, pctx: ctx,
		seen:     map[chunk.ID]struct{}{},
		packers:  map[chunk.BlobType]*chunk.Packer{},
		uploads:  make(chan packJob),
		ctx:      wctx,
		cancel:   cancel,
		sizeHint: r.cfg.PackSize,
	}
	// Room for a full pack and its header (about 45 bytes a blob, blobs
	// of 4 KiB at least), so a pack never reallocates its buffer.
	w.packPool = bufpool.New(w.sizeHint+w.sizeHint/64+4096, r.opts.Uploads+2)
	w.packBufs = map[chunk.BlobType]*[]byte{}
	w.encPool.New = func() any { b := make([]byte, 0, 1<<20); return &b }
	for i := 0; i < r.opts.Uploads; i++ {
		w.wg.Add(1)
		go w.uploader()
	}
	// A lost lease stops the uploads: a prune may be deleting what this
	// writer deduplicated against, so nothing it writes may be committed.
	lease.keep(ctx, w.fail)
	w.adopt(ctx)
	return w, nil
}

// LeaseID names the writer's lease (leases/<id>).
func (w *Writer) LeaseID() string { return w.lease.id }

// indexed reports whether the index holds a copy of id that the writer
// may deduplicate against: one that no condemned record is taking away.
func (w *Writer) indexed(id chunk.ID) bool {
	return w.ix.Has(id) && !w.cv.hides(id)
}

// Has reports whether a blob is already stored or being stored.
func (w *Writer) Has(id chunk.ID) bool {
	if w.indexed(id) {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.seen[id]
	return ok
}

// Save stores plain as a blob of type t unless a blob with its id exists,
// and returns the id and whether it was new.
func (w *Writer) Save(ctx context.Context, t chunk.BlobType, plain []byte) (chunk.ID, bool, error) {
	id := w.r.codec.BlobID(plain)
	isNew, err := w.SaveID(ctx, t, id, plain)
	return id, isNew, err
}

// SaveID is Save for a caller that already computed the id.
func (w *Writer) SaveID(ctx context.Context, t chunk.BlobType, id chunk.ID, plain []byte) (bool, error) {
	if err := w.failed(); err != nil {
		return false, err
	}
	if w.indexed(id) {
		return false, nil
	}
	w.mu.Lock()
	if _, ok := w.seen[id]; ok {
		w.mu.Unlock()
		return false, nil
	}
	w.seen[id] = struct{}{}
	w.mu.Unlock()

	sp := w.encPool.Get().(*[]byte)
	stored := w.r.codec.Encode((*sp)[:0], plain, id)
	defer func() { *sp = stored[:0]; w.encPool.Put(sp) }()

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false, errors.New("save blob: writer is closed")
	}
	p := w.packers[t]
	var full *chunk.Packer
	var fullBuf *[]byte
	if p != nil && p.Count() > 0 && p.Size()+len(stored) > w.r.cfg.PackSize {
		// Close the pack before it would pass the target size, so a pack
		// buffer never needs more than PackSize plus its header.
		full, fullBuf = p, w.packBufs[t]
		delete(w.packers, t)
		delete(w.packBufs, t)
		p = nil
	}
	if p == nil {
		if t == chunk.DataBlob {
			bp := w.packPool.Get()
			w.packBufs[t] = bp
			p = chunk.NewPackerBuf(*bp)
		} else {
			// Metadata is small; it must not pin a whole pack buffer.
			p = chunk.NewPacker(1 << 20)
		}
		w.packers[t] = p
	}
	p.Add(t, id, stored, len(plain))
	w.mu.Unlock()
	atomic.AddInt64(&w.stats.BlobsNew, 1)
	atomic.AddInt64(&w.stats.BytesNew, int64(len(plain)))
	if full != nil {
		return true, w.send(ctx, full, fullBuf)
	}
	return true, nil
}

func (w *Writer) send(ctx context.Context, p *chunk.Packer, buf *[]byte) error {
	data, id, blobs := p.Finish(w.r.codec)
	select {
	case w.uploads <- packJob{data: data, id: id, blobs: blobs, buf: buf}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.ctx.Done():
		if err := w.failed(); err != nil {
			return err
		}
		return w.ctx.Err()
	}
}

func (w *Writer) uploader() {
	defer w.wg.Done()
	for {
		select {
		case j, ok := <-w.uploads:
			if !ok {
				return
			}
			if err := w.upload(j); err != nil {
				w.fail(err)
				return
			}
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *Writer) upload(j packJob) error {
	start := time.Now()
	if _, err := w.r.target.Put(w.ctx, PackKey(j.id), j.data); err != nil {
		return fmt.Errorf("upload pack %s: %w", j.id.Short(), err)
	}
	w.r.log.Debug("pack uploaded", "pack", j.id.Short(), "bytes", len(j.data), "blobs", len(j.blobs), "took", time.Since(start))
	atomic.AddInt64(&w.stats.Packs, 1)
	atomic.AddInt64(&w.stats.BytesStored, int64(len(j.data)))
	ip := chunk.IndexPack{ID: j.id, Size: uint32(len(j.data)), Blobs: j.blobs}
	if j.buf != nil {
		*j.buf = j.data[:cap(j.data)]
		w.packPool.Put(j.buf)
	}
	w.mu.Lock()
	w.pending = append(w.pending, ip)
	var batch []chunk.IndexPack
	var unindexed []string
	if len(w.pending) >= indexEvery {
		batch, w.pending = w.pending, nil
	} else {
		for _, p := range w.pending {
			unindexed = append(unindexed, p.ID.String())
		}
	}
	w.mu.Unlock()
	if batch != nil {
		return w.writeIndex(w.ctx, batch)
	}
	// Until the batch is indexed, the lease says which packs are ours: a
	// writer killed now leaves them to the next one (adopt), not to prune.
	if err := w.lease.setUnindexed(w.ctx, unindexed); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		w.r.log.Warn("could not record uploaded packs in the lease", "err", err)
	}
	return nil
}

// adopt indexes the packs that an earlier writer of this writer id
// uploaded but did not index before it died (they are listed in its
// lease), so that their blobs are not uploaded again: a replication
// killed mid-upload resumes where it was. A lease is taken over when it
// expired, or when its process is gone from this host. Packs a
// condemned record names are left to prune.
func (w *Writer) adopt(ctx context.Context) {
	leases, err := w.r.listLeases(ctx)
	if err != nil {
		w.r.log.Warn("could not list leases to resume an interrupted upload", "err", err)
		return
	}
	host, _ := os.Hostname()
	now := time.Now()
	for _, l := range leases {
		if l.Writer != w.r.opts.WriterID || l.ID == w.lease.id || len(l.unindexed) == 0 {
			w.r.log.Debug("lease not adoptable", "lease", l.ID, "writer", l.Writer, "self", w.r.opts.WriterID, "unindexed", len(l.unindexed))
			continue
		}
		dead := l.expired(now) || (l.Host == host && l.PID > 0 && syscall.Kill(l.PID, 0) == syscall.ESRCH)
		if !dead {
			w.r.log.Debug("a lease of this writer id is alive: its packs are not adopted", "lease", l.ID, "host", l.Host, "pid", l.PID)
			continue
		}
		var adopted []chunk.IndexPack
		for _, s := range l.unindexed {
			id, err := chunk.ParseID(s)
			if err != nil {
				continue
			}
			if _, ok := w.ix.PackSize(id); ok {
				continue // indexed after all
			}
			ip, err := w.r.readPackIndex(ctx, id)
			if err != nil {
				w.r.log.Warn("cannot adopt a pack of an interrupted writer: its blobs are uploaded again", "pack", id.Short(), "err", err)
				continue
			}
			if w.cv.condemnsPack(ip.ID) {
				continue
			}
			adopted = append(adopted, ip)
		}
		if len(adopted) > 0 {
			if err := w.writeIndex(ctx, adopted); err != nil {
				w.r.log.Warn("could not index the packs of an interrupted writer", "err", err)
				continue
			}
			w.r.log.Info("resumed an interrupted upload: its packs are indexed and reused", "packs", len(adopted), "lease", l.ID)
		}
		if err := w.r.target.Delete(ctx, l.key); err != nil && !errors.Is(err, targets.ErrNotFound) {
			w.r.log.Debug("could not remove a dead writer's lease (prune will)", "lease", l.ID, "err", err)
		}
	}
}

// readPackIndex reads a pack's blob list from its end, with two small
// range reads.
func (r *Repository) readPackIndex(ctx context.Context, id chunk.ID) (chunk.IndexPack, error) {
	oi, err := r.target.Stat(ctx, PackKey(id))
	if err != nil {
		return chunk.IndexPack{}, err
	}
	if oi.Size < chunk.PackTrailerSize {
		return chunk.IndexPack{}, fmt.Errorf("pack %s: %w", id.Short(), chunk.ErrCorruptPack)
	}
	trailer, err := r.target.GetRange(ctx, PackKey(id), oi.Size-chunk.PackTrailerSize, chunk.PackTrailerSize)
	if err != nil {
		return chunk.IndexPack{}, err
	}
	n, err := chunk.PackTailLen(trailer)
	if err != nil {
		return chunk.IndexPack{}, err
	}
	if int64(n) > oi.Size {
		return chunk.IndexPack{}, fmt.Errorf("pack %s: header longer than the pack: %w", id.Short(), chunk.ErrCorruptPack)
	}
	tail, err := r.target.GetRange(ctx, PackKey(id), oi.Size-int64(n), int64(n))
	if err != nil {
		return chunk.IndexPack{}, err
	}
	blobs, err := chunk.ParsePackTail(r.codec, tail, oi.Size)
	if err != nil {
		return chunk.IndexPack{}, fmt.Errorf("pack %s: %w", id.Short(), err)
	}
	return chunk.IndexPack{ID: id, Size: uint32(oi.Size), Blobs: blobs}, nil
}

func (w *Writer) writeIndex(ctx context.Context, packs []chunk.IndexPack) error {
	if len(packs) == 0 {
		return nil
	}
	data := chunk.EncodeIndexFile(w.r.codec, chunk.IndexFile{Packs: packs})
	key := fmt.Sprintf("%s%s-%s-%s", indexPrefix, w.r.opts.WriterID, time.Now().UTC().Format("20060102T150405Z"), randomHex(4))
	if _, err := w.r.target.PutIfAbsent(ctx, key, data); err != nil {
		return fmt.Errorf("save index %s: %w", key, err)
	}
	for _, p := range packs {
		w.ix.AddPack(p)
	}
	// Blobs stored again because a record condemns their old copy now
	// have one that stays.
	w.cv.revive(packs)
	// The index answers for these blobs now: seen keeps only the blobs in
	// flight, not every blob of a run (a full replication of a 2 TiB disk
	// would otherwise hold 4 million ids twice).
	w.mu.Lock()
	for _, p := range packs {
		for _, b := range p.Blobs {
			delete(w.seen, b.ID)
		}
	}
	w.mu.Unlock()
	w.r.noteIndexFile(key, w.ix)
	atomic.AddInt64(&w.stats.IndexFiles, 1)
	atomic.AddInt64(&w.stats.BytesStored, int64(len(data)))
	return nil
}

func (w *Writer) fail(err error) {
	w.errOnce.Do(func() {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		w.cancel()
	})
}

func (w *Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Flush uploads the partly filled packs and indexes everything uploaded so
// far, without closing the writer.
func (w *Writer) Flush(ctx context.Context) error {
	type open struct {
		p   *chunk.Packer
		buf *[]byte
	}
	w.mu.Lock()
	var ps []open
	for t, p := range w.packers {
		if p.Count() > 0 {
			ps = append(ps, open{p, w.packBufs[t]})
		}
		delete(w.packers, t)
		delete(w.packBufs, t)
	}
	w.mu.Unlock()
	for _, o := range ps {
		if err := w.send(ctx, o.p, o.buf); err != nil {
			return err
		}
	}
	return nil
}

// Close uploads what is left, waits for all uploads and writes the final
// index file. After a nil return every blob saved is durable and indexed,
// and the writer still holds its lease: Commit the manifest next (or
// Release). No Save may start once Close has been called. On error the
// lease is released: there is nothing to commit.
func (w *Writer) Close(ctx context.Context) error {
	if err := w.Flush(ctx); err != nil {
		w.Abort()
		return err
	}
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	close(w.uploads)
	w.wg.Wait()
	if err := w.failed(); err != nil {
		w.Abort()
		return err
	}
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	if err := w.writeIndex(ctx, batch); err != nil {
		w.Abort()
		return err
	}
	w.cancel()
	w.mu.Lock()
	w.durable = true
	w.mu.Unlock()
	return nil
}

// Commit writes the manifest of a snapshot whose blobs this writer
// stored (after a successful Close) and releases the lease. It refuses if
// the lease was lost: a prune may have deleted blobs the snapshot uses.
func (w *Writer) Commit(ctx context.Context, s *Snapshot) error {
	w.mu.Lock()
	durable := w.durable
	w.mu.Unlock()
	if !durable {
		return fmt.Errorf("commit snapshot %s: the writer was not closed successfully", s.ID)
	}
	if err := w.failed(); err != nil {
		w.Abort()
		return fmt.Errorf("commit snapshot %s: %w", s.ID, err)
	}
	if err := w.lease.check(); err != nil {
		w.Abort()
		return fmt.Errorf("commit snapshot %s: %w", s.ID, err)
	}
	err := w.r.SaveSnapshot(ctx, s)
	// Released even when ctx ended: a lease left behind blocks sweeps
	// until it expires.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if rerr := w.Release(rctx); rerr != nil {
		w.r.log.Warn("could not release the writer lease (it expires)", "lease", w.lease.id, "err", rerr)
	}
	return err
}

// Release ends the writer's lease. A writer that committed its manifest
// by other means (SaveSnapshot) must release only after that commit.
// Later calls, and calls after Commit or Abort, do nothing.
func (w *Writer) Release(ctx context.Context) error {
	return w.lease.release(ctx)
}

// Abort stops uploads and releases the lease; it may be called at any
// time and more than once. Packs already uploaded stay and are indexed
// (unless the lease was lost), so the next run reuses them: an
// interrupted replication stops at a safe point.
func (w *Writer) Abort() {
	w.fail(context.Canceled)
	w.wg.Wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.pctx), time.Minute)
	defer cancel()
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(batch) > 0 && w.lease.check() == nil {
		if err := w.writeIndex(ctx, batch); err != nil {
			w.r.log.Warn("could not index the packs of an interrupted upload (the next run uploads them again)", "err", err)
		}
	}
	if err := w.lease.release(ctx); err != nil {
		w.r.log.Warn("could not release the writer lease (it expires)", "lease", w.lease.id, "err", err)
	}
}

// Stats returns what the writer stored so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		BlobsNew:    atomic.LoadInt64(&w.stats.BlobsNew),
		BytesNew:    atomic.LoadInt64(&w.stats.BytesNew),
		BytesStored: atomic.LoadInt64(&w.stats.BytesStored),
		Packs:       atomic.LoadInt64(&w.stats.Packs),
		IndexFiles:  atomic.LoadInt64(&w.stats.IndexFiles),
	}
}

type packJob struct {
	data  []byte
	id    chunk.ID
	blobs []chunk.PackedBlob
	buf   *[]byte // pooled backing of data, if any
}
