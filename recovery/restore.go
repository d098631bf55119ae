// Package recovery rebuilds VMs from a repository: disk restore now; the
// orchestrator, fencing and drills build on it.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/repo"
)

// RestoreCounters is live progress of a restore.
type RestoreCounters struct {
	BytesTotal   atomic.Int64 // allocated bytes to restore
	BytesWritten atomic.Int64
	BytesFetched atomic.Int64 // bytes read from the target
}

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// Workers is the number of concurrent range reads (default 8).
	Workers int
	// Overwrite replaces existing files; by default they are refused.
	Overwrite bool
	// Format is "raw" (default) or "qcow2" (converted with qemu-img).
	Format   string
	Counters *RestoreCounters
	Logger   *slog.Logger
}

func (o *RestoreOptions) fill() {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Format == "" {
		o.Format = "raw"
	}
	if o.Counters == nil {
		o.Counters = &RestoreCounters{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Spans of a pack fetched with one range read: blobs closer than
// maxGap are fetched together, up to maxSpan bytes.
const (
	maxGap  = 256 << 10
	maxSpan = 8 << 20
	// pagesPerBatch bounds memory: the extents of this many map pages
	// are planned at once.
	pagesPerBatch = 32
)

// RestoreSnapshot writes every disk of snap into dir (dir/<disk name>) and
// the VM's description to dir/<vm>.json.
func RestoreSnapshot(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, dir string, opts RestoreOptions) error {
	opts.fill()
	if opts.Format != "raw" && opts.Format != "qcow2" {
		return fmt.Errorf("restore format %q: use raw or qcow2", opts.Format)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create restore directory: %w", err)
	}
	for _, d := range snap.Disks {
		opts.Counters.BytesTotal.Add(d.Allocated)
	}
	for _, d := range snap.Disks {
		if err := RestoreDisk(ctx, r, d, filepath.Join(dir, d.Name), opts); err != nil {
			return fmt.Errorf("restore disk %s of %s (snapshot %s): %w", d.Name, snap.VM, snap.ID, err)
		}
	}
	return writeSpec(snap, filepath.Join(dir, snap.VM+".json"), opts.Overwrite)
}

// RestoreDisk writes one disk to path. The data goes to a temporary file
// renamed into place at the end, so a file at path is always complete.
func RestoreDisk(ctx context.Context, r *repo.Repository, d repo.Disk, path string, opts RestoreOptions) error {
	opts.fill()
	if !opts.Overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s already exists: choose an empty target directory or pass --overwrite", path)
		}
	}
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Truncate(d.Size); err != nil {
		return fmt.Errorf("size %s: %w", tmp, err)
	}
	start := time.Now()
	wb := &writeback{f: f}
	for first := 0; first < len(d.Pages); first += pagesPerBatch {
		last := min(first+pagesPerBatch, len(d.Pages))
		if err := restorePages(ctx, r, d, first, last, f, wb, opts); err != nil {
			return err
		}
	}
	written := time.Now()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	opts.Logger.Debug("disk restored", "disk", d.Name, "write", written.Sub(start), "sync", time.Since(written))
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if opts.Format == "qcow2" {
		out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", tmp, path+".qcow2.partial").CombinedOutput()
		os.Remove(tmp)
		if err != nil {
			os.Remove(path + ".qcow2.partial")
			if errors.Is(err, exec.ErrNotFound) {
				return fmt.Errorf("qcow2 output needs qemu-img: install qemu-utils, or restore as raw")
			}
			return fmt.Errorf("convert %s to qcow2: %w: %s", path, err, out)
		}
		tmp = path + ".qcow2.partial"
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	ok = true
	return nil
}

// span is one range read of a pack and the blobs in it.
type span struct {
	pack  chunk.ID
	off   int64
	len   int64
	blobs []spanBlob
}

type spanBlob struct {
	id   chunk.ID
	loc  chunk.Location
	exts []repo.Extent
}

func restorePages(ctx context.Context, r *repo.Repository, d repo.Disk, first, last int, f *os.File, wb *writeback, opts RestoreOptions) error {
	// Load the batch's map pages.
	pages := make([][]repo.Extent, last-first)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	for i := first; i < last; i++ {
		g.Go(func() error {
			start := int64(i) * d.PageSize
			exts, err := r.LoadMapPage(gctx, d.Pages[i], start, min(start+d.PageSize, d.Size))
			pages[i-first] = exts
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	byBlob := map[chunk.ID][]repo.Extent{}
	for _, exts := range pages {
		for _, e := range exts {
			byBlob[e.Blob] = append(byBlob[e.Blob], e)
		}
	}
	spans, err := planSpans(ctx, r, byBlob)
	if err != nil {
		return err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	for _, sp := range spans {
		g.Go(func() error { return restoreSpan(gctx, r, sp, f, wb, opts) })
	}
	return g.Wait()
}

// planSpans groups blobs by pack and merges neighbours into range reads.
func planSpans(ctx context.Context, r *repo.Repository, byBlob map[chunk.ID][]repo.Extent) ([]span, error) {
	ix, err := r.Index(ctx)
	if err != nil {
		return nil, err
	}
	byPack := map[chunk.ID][]spanBlob{}
	for id, exts := range byBlob {
		loc, ok := ix.Lookup(id)
		if !ok {
			return nil, fmt.Errorf("blob %s is missing from the index: %w (run drctl verify)", id.Short(), repo.ErrDamaged)
		}
		byPack[loc.Pack] = append(byPack[loc.Pack], spanBlob{id: id, loc: loc, exts: exts})
	}
	var spans []span
	for pack, blobs := range byPack {
		sort.Slice(blobs, func(i, j int) bool { return blobs[i].loc.Offset < blobs[j].loc.Offset })
		var cur *span
		for _, b := range blobs {
			bo, bl := int64(b.loc.Offset), int64(b.loc.Length)
			if cur != nil && bo-(cur.off+cur.len) <= maxGap && bo+bl-cur.off <= maxSpan {
				cur.len = bo + bl - cur.off
				cur.blobs = append(cur.blobs, b)
				continue
			}
			spans = append(spans, span{pack: pack, off: bo, len: bl, blobs: []spanBlob{b}})
			cur = &spans[len(spans)-1]
		}
	}
	// Big spans first keeps the workers evenly busy at the end.
	sort.Slice(spans, func(i, j int) bool { return spans[i].len > spans[j].len })
	return spans, nil
}

func restoreSpan(ctx context.Context, r *repo.Repository, sp span, f *os.File, wb *writeback, opts RestoreOptions) error {
	data, err := r.Target().GetRange(ctx, repo.PackKey(sp.pack), sp.off, sp.len)
	if err != nil {
		return fmt.Errorf("read pack %s: %w", sp.pack.Short(), err)
	}
	opts.Counters.BytesFetched.Add(int64(len(data)))
	var plain []byte
	for _, b := range sp.blobs {
		rel := int64(b.loc.Offset) - sp.off
		plain, err = r.Codec().Decode(plain[:0], data[rel:rel+int64(b.loc.Length)], b.id)
		if err != nil {
			return fmt.Errorf("blob %s in pack %s: %w: %w (restore refuses to write wrong data; run drctl verify)", b.id.Short(), sp.pack.Short(), repo.ErrDamaged, err)
		}
		for _, e := range b.exts {
			if e.BlobOff+e.Len > int64(len(plain)) {
				return fmt.Errorf("extent at %d reads past the end of blob %s: %w", e.Off, b.id.Short(), repo.ErrDamaged)
			}
			if _, err := f.WriteAt(plain[e.BlobOff:e.BlobOff+e.Len], e.Off); err != nil {
				return fmt.Errorf("write %s at %d: %w", f.Name(), e.Off, err)
			}
			opts.Counters.BytesWritten.Add(e.Len)
			wb.wrote(e.Len)
		}
	}
	return nil
}
