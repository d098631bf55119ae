package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/bufpool"
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
// snapshot manifest.
type Writer struct {
	r  *Repository
	ix *chunk.Index

	mu      sync.Mutex
	seen    map[chunk.ID]struct{}
	packers map[chunk.BlobType]*chunk.Packer
	pending []chunk.IndexPack
	closed  bool

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

// NewWriter starts a writer. The caller must Close or Abort it.
func (r *Repository) NewWriter(ctx context.Context) (*Writer, error) {
	ix, err := r.RefreshIndex(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Writer{
		r: r, ix: ix,
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
	return w, nil
}

// Has reports whether a blob is already stored or being stored.
func (w *Writer) Has(id chunk.ID) bool {
	if w.ix.Has(id) {
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
	if w.ix.Has(id) {
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
	if len(w.pending) >= indexEvery {
		batch, w.pending = w.pending, nil
	}
	w.mu.Unlock()
	if batch != nil {
		return w.writeIndex(w.ctx, batch)
	}
	return nil
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
// index file. After a nil return every blob saved is durable and indexed.
// No Save may start once Close has been called.
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
		w.cancel()
		return err
	}
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	err := w.writeIndex(ctx, batch)
	w.cancel()
	return err
}

// Abort stops uploads; it may be called at any time and more than once.
// Packs already uploaded stay: they are indexed if their batch completed,
// and otherwise removed by prune after its grace period.
func (w *Writer) Abort() {
	w.fail(context.Canceled)
	w.wg.Wait()
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
