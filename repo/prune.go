package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// Prune defaults.
const (
	// DefaultPruneGrace is how old a pack must be before prune may delete
	// or rewrite it: a younger pack may belong to a replication that has
	// not committed its manifest yet.
	DefaultPruneGrace = time.Hour
	// DefaultMaxUnusedFraction is the share of unused bytes above which a
	// partly used pack is repacked.
	DefaultMaxUnusedFraction = 0.2
	// DefaultBlobsPerIndexFile bounds the index files prune writes.
	DefaultBlobsPerIndexFile = 50000
)

// PruneOptions tune Prune. The zero value is the safe default.
type PruneOptions struct {
	// Grace is the minimum age (by the target's modification time) of a
	// pack that prune deletes or repacks. 0 means DefaultPruneGrace; a
	// negative value means no grace at all, which is only safe when no
	// other writer can be running (and in tests).
	Grace time.Duration
	// MaxUnusedFraction: a pack whose unused bytes exceed this share is
	// repacked. 0 means DefaultMaxUnusedFraction; a negative value means
	// any unused byte triggers a repack; 1 or more never repacks.
	MaxUnusedFraction float64
	// BlobsPerIndexFile bounds the new index files (0: the default).
	BlobsPerIndexFile int
	// DryRun plans and reports without changing anything.
	DryRun bool
}

func (o *PruneOptions) fill() {
	switch {
	case o.Grace == 0:
		o.Grace = DefaultPruneGrace
	case o.Grace < 0:
		o.Grace = 0
	}
	switch {
	case o.MaxUnusedFraction == 0:
		o.MaxUnusedFraction = DefaultMaxUnusedFraction
	case o.MaxUnusedFraction < 0:
		o.MaxUnusedFraction = 0
	}
	if o.BlobsPerIndexFile <= 0 {
		o.BlobsPerIndexFile = DefaultBlobsPerIndexFile
	}
}

// PruneResult says what Prune did (or, in a dry run, would do).
type PruneResult struct {
	DryRun    bool `json:"dry_run"`
	Snapshots int  `json:"snapshots"`

	PacksBefore int   `json:"packs_before"`
	BytesBefore int64 `json:"bytes_before"`
	PacksAfter  int   `json:"packs_after"`
	BytesAfter  int64 `json:"bytes_after"`

	BlobsUsed      int   `json:"blobs_used"`
	BlobsUnused    int   `json:"blobs_unused"`
	BytesUnused    int64 `json:"bytes_unused"` // stored bytes of unused blobs and duplicate copies before prune
	DuplicateBlobs int   `json:"duplicate_blobs"`

	PacksDeleted       int   `json:"packs_deleted"`        // indexed packs with nothing in use
	UnindexedDeleted   int   `json:"unindexed_deleted"`    // packs no index lists
	PacksRepacked      int   `json:"packs_repacked"`       // partly used packs rewritten
	PacksWritten       int   `json:"packs_written"`        // new packs holding the repacked blobs
	BlobsRepacked      int   `json:"blobs_repacked"`       // blobs copied into new packs
	BytesRepacked      int64 `json:"bytes_repacked"`       // stored bytes copied
	PacksKeptFresh     int   `json:"packs_kept_fresh"`     // would go, but younger than the grace period
	UnindexedKeptFresh int   `json:"unindexed_kept_fresh"` // unindexed, younger than the grace period
	PacksRescued       int   `json:"packs_rescued"`        // kept because a snapshot committed during prune uses them
	BytesFreed         int64 `json:"bytes_freed"`

	IndexFilesBefore int `json:"index_files_before"`
	IndexFilesAfter  int `json:"index_files_after"`
}

// Pack fates.
const (
	packKeep = iota
	packDelete
	packRepack
)

type packPlan struct {
	p      *idxPack
	fate   int
	needed []int32 // blobs to copy (repack)
}

// Prune removes what no snapshot uses: packs whose blobs are all unused,
// packs left unindexed by interrupted runs, and the unused parts of packs
// that are mostly unused (by copying their used blobs into new packs).
//
// It takes no repository-wide lock, so replications may run meanwhile.
// The steps, and why a crash at any point leaves a repository in which
// every committed snapshot is complete:
//
//  1. List and read every index file, list the packs, read every snapshot
//     and every map page: the used set (data blobs, map and digest pages).
//  2. Plan. A pack whose blobs are all unused goes; an unindexed pack
//     goes; a pack with a mix goes after its used blobs are copied if its
//     unused share exceeds MaxUnusedFraction. A blob stored twice keeps one
//     copy. A pack younger than Grace is never touched.
//  3. Upload the new packs (repacked blobs). A crash here leaves unindexed
//     packs, which the next prune removes: nothing references them.
//  4. Write new index files (create-only, new names) covering every kept
//     pack and the new packs. A crash here leaves old and new index files
//     side by side: every blob is indexed at least once, some twice, which
//     readers handle (first location wins; all copies exist).
//  5. List the snapshots again; if one committed since step 1 uses a blob
//     that only a pack about to be deleted holds, keep that pack and index
//     it in one more index file.
//  6. Delete the old index files read in step 1 (never ones written since by
//     other writers). A crash or failure here leaves some old files; they
//     only list packs that still exist, since no pack is deleted yet; so
//     prune stops at the first failure.
//  7. Delete the dropped packs. By now no index file lists them, so a
//     crash here leaves only unindexed packs.
//
// What the grace period and step 5 do not cover: a replication that loaded
// the index before step 6 may deduplicate a new blob against an old copy
// in a pack prune deletes in step 7, and commit its manifest after step 5.
// That snapshot then references a missing blob (verify reports it). The
// window is the duration of one replication, provided each replication
// loads the index afresh: a long-lived Repository handle caches its index
// (Index loads it once), so a handle opened before a prune by another
// process deduplicates against deleted packs until it reloads. Closing the
// window needs a lease that prune waits out (replications register before
// loading the index), which is later work. Two prunes must not run at once.
//
// When nothing is to be removed but the index is spread over more files
// than needed, prune still rewrites it (steps 4 and 6). At the end the
// handle's cached index is dropped (ReloadIndex): do not run Prune on a
// handle with an open Writer.
func (r *Repository) Prune(ctx context.Context, opts PruneOptions) (PruneResult, error) {
	opts.fill()
	var res PruneResult
	res.DryRun = opts.DryRun
	now := time.Now()

	// 1. What exists and what is used.
	fi, bad, err := r.loadFullIndex(ctx, nil)
	if err != nil {
		return res, err
	}
	if len(bad) > 0 {
		return res, fmt.Errorf("prune: index file %s cannot be read (%v): %w; run drctl verify, prune will not run on a damaged index", bad[0].key, bad[0].err, ErrDamaged)
	}
	if len(fi.conflicts) > 0 {
		return res, fmt.Errorf("prune: index files disagree: %s: %w", fi.conflicts[0], ErrDamaged)
	}
	listed, _, err := r.listPacks(ctx)
	if err != nil {
		return res, err
	}
	for id, p := range fi.packs {
		oi, ok := listed[id]
		if !ok {
			return res, fmt.Errorf("prune: pack %s is indexed but missing: %w; run drctl verify", id.Short(), ErrDamaged)
		}
		if oi.Size != int64(p.Size) {
			return res, fmt.Errorf("prune: pack %s has %d bytes, the index says %d: %w; run drctl verify", id.Short(), oi.Size, p.Size, ErrDamaged)
		}
	}
	res.IndexFilesBefore = len(fi.files)
	res.PacksBefore = len(listed)
	for _, oi := range listed {
		res.BytesBefore += oi.Size
	}
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return res, err
	}
	u := &usage{r: r, used: map[chunk.ID]struct{}{}, pages: map[chunk.ID]struct{}{}}
	known := map[string]bool{}
	for _, ref := range refs {
		known[ref.Key] = true
	}
	n, err := u.addSnapshots(ctx, refs, func(id chunk.ID) []blobPos { return fi.locations(id) })
	if err != nil {
		return res, fmt.Errorf("prune: %w", err)
	}
	res.Snapshots = n
	res.BlobsUsed = len(u.used)
	res.DuplicateBlobs = len(fi.dups)

	// 2. Plan.
	// A pack whose age the target does not tell counts as fresh.
	fresh := func(id chunk.ID) bool {
		oi := listed[id]
		return opts.Grace > 0 && (oi.ModTime.IsZero() || now.Sub(oi.ModTime) < opts.Grace)
	}
	usedFrac := map[*idxPack]float64{}
	for _, p := range fi.packs {
		var used, total int64
		for _, b := range p.Blobs {
			total += int64(b.Length)
			if _, ok := u.used[b.ID]; ok {
				used += int64(b.Length)
			}
		}
		if total > 0 {
			usedFrac[p] = float64(used) / float64(total)
		}
	}
	// A blob stored twice keeps the copy in the pack most likely to stay
	// as it is: a fresh one, else the most used one.
	better := func(a, b *idxPack) bool {
		if fa, fb := fresh(a.ID), fresh(b.ID); fa != fb {
			return fa
		}
		if usedFrac[a] != usedFrac[b] {
			return usedFrac[a] > usedFrac[b]
		}
		return bytes.Compare(a.ID[:], b.ID[:]) < 0
	}
	keeper := func(id chunk.ID) *idxPack {
		locs := fi.locations(id)
		best := locs[0].pack
		for _, l := range locs[1:] {
			if better(l.pack, best) {
				best = l.pack
			}
		}
		return best
	}
	unusedBlobs := map[chunk.ID]struct{}{}
	var plans []*packPlan
	for _, p := range fi.sortedPacks() {
		pl := &packPlan{p: p}
		plans = append(plans, pl)
		var neededBytes, unusedBytes int64
		seen := map[chunk.ID]bool{}
		for i, b := range p.Blobs {
			_, used := u.used[b.ID]
			if used && !seen[b.ID] && (len(fi.dups[b.ID]) == 0 || keeper(b.ID) == p) {
				seen[b.ID] = true
				pl.needed = append(pl.needed, int32(i))
				neededBytes += int64(b.Length)
				continue
			}
			if !used {
				unusedBlobs[b.ID] = struct{}{}
			}
			unusedBytes += int64(b.Length)
		}
		res.BytesUnused += unusedBytes
		switch {
		case unusedBytes == 0 && len(p.Blobs) > 0:
			pl.fate = packKeep
		case fresh(p.ID):
			pl.fate = packKeep
			res.PacksKeptFresh++
		case len(pl.needed) == 0:
			pl.fate = packDelete
		case float64(unusedBytes) > opts.MaxUnusedFraction*float64(neededBytes+unusedBytes):
			pl.fate = packRepack
		default:
			pl.fate = packKeep
		}
		if pl.fate != packRepack {
			pl.needed = nil
		}
	}
	res.BlobsUnused = len(unusedBlobs)
	var unindexed []targets.ObjectInfo
	for id, oi := range listed {
		if _, ok := fi.packs[id]; ok {
			continue
		}
		if fresh(id) {
			res.UnindexedKeptFresh++
			continue
		}
		unindexed = append(unindexed, oi)
	}
	sort.Slice(unindexed, func(i, j int) bool { return unindexed[i].Key < unindexed[j].Key })

	var keptPacks []chunk.IndexPack
	var doomed []*idxPack
	var repack []*packPlan
	var blobsKept int
	for _, pl := range plans {
		switch pl.fate {
		case packKeep:
			keptPacks = append(keptPacks, chunk.IndexPack{ID: pl.p.ID, Size: pl.p.Size, Blobs: pl.p.Blobs})
			blobsKept += len(pl.p.Blobs)
		case packDelete:
			doomed = append(doomed, pl.p)
			res.PacksDeleted++
		case packRepack:
			doomed = append(doomed, pl.p)
			repack = append(repack, pl)
			res.PacksRepacked++
			for _, i := range pl.needed {
				res.BlobsRepacked++
				res.BytesRepacked += int64(pl.p.Blobs[i].Length)
			}
		}
	}
	res.UnindexedDeleted = len(unindexed)

	if opts.DryRun {
		// Estimates: repacked blobs fill packs of the configured size.
		res.PacksWritten = int(math.Ceil(float64(res.BytesRepacked) / float64(r.cfg.PackSize)))
		freed := int64(0)
		for _, p := range doomed {
			freed += int64(p.Size)
		}
		for _, oi := range unindexed {
			freed += oi.Size
		}
		res.BytesFreed = freed - res.BytesRepacked
		res.PacksAfter = res.PacksBefore - len(doomed) - len(unindexed) + res.PacksWritten
		res.BytesAfter = res.BytesBefore - res.BytesFreed
		res.IndexFilesAfter = int(math.Ceil(float64(blobsKept+res.BlobsRepacked) / float64(opts.BlobsPerIndexFile)))
		return res, nil
	}
	needFiles := (blobsKept + opts.BlobsPerIndexFile - 1) / opts.BlobsPerIndexFile
	if len(doomed) == 0 && len(unindexed) == 0 && len(fi.files) <= needFiles {
		// Nothing to remove and the index is compact: leave it as it is.
		res.PacksAfter, res.BytesAfter = res.PacksBefore, res.BytesBefore
		res.IndexFilesAfter = res.IndexFilesBefore
		return res, nil
	}
	defer r.ReloadIndex()

	// 3. Copy the used blobs of the packs to repack.
	newPacks, written, err := r.repackBlobs(ctx, repack)
	if err != nil {
		return res, fmt.Errorf("prune: repack: %w", err)
	}
	res.PacksWritten = len(newPacks)

	// 4. New index files for everything that stays.
	ours := map[string]bool{}
	files, err := r.writeIndexFiles(ctx, append(keptPacks, newPacks...), opts.BlobsPerIndexFile)
	for _, f := range files {
		ours[f] = true
	}
	if err != nil {
		return res, fmt.Errorf("prune: write index: %w (nothing was deleted)", err)
	}

	// 5. Narrow the race with replications that committed meanwhile.
	kept := map[chunk.ID]struct{}{}
	for _, p := range newPacks {
		for _, b := range p.Blobs {
			kept[b.ID] = struct{}{}
		}
	}
	rescued, lateIndexed, err := r.pruneRecheck(ctx, fi, u, known, ours, doomed, kept)
	if err != nil {
		return res, fmt.Errorf("prune: re-check snapshots: %w (nothing was deleted)", err)
	}
	if len(rescued) > 0 {
		var ips []chunk.IndexPack
		for _, p := range rescued {
			ips = append(ips, chunk.IndexPack{ID: p.ID, Size: p.Size, Blobs: p.Blobs})
			r.log.Warn("prune: keeping a pack that a snapshot committed during prune uses", "pack", p.ID.Short())
		}
		more, err := r.writeIndexFiles(ctx, ips, opts.BlobsPerIndexFile)
		files = append(files, more...)
		if err != nil {
			return res, fmt.Errorf("prune: write index: %w (nothing was deleted)", err)
		}
		var keep []*idxPack
		for _, p := range doomed {
			if !containsPack(rescued, p) {
				keep = append(keep, p)
			}
		}
		doomed = keep
		res.PacksRescued = len(rescued)
		for _, pl := range plans {
			if containsPack(rescued, pl.p) {
				switch pl.fate {
				case packDelete:
					res.PacksDeleted--
				case packRepack:
					res.PacksRepacked--
				}
			}
		}
	}
	if len(lateIndexed) > 0 {
		var keep []targets.ObjectInfo
		for _, oi := range unindexed {
			if id, _ := parsePackKey(oi.Key); !lateIndexed[id] {
				keep = append(keep, oi)
			}
		}
		res.PacksRescued += len(unindexed) - len(keep)
		unindexed = keep
		res.UnindexedDeleted = len(unindexed)
	}
	res.IndexFilesAfter = len(files)

	// 6. Old index files go before any pack does.
	ig, igctx := errgroup.WithContext(ctx)
	ig.SetLimit(r.opts.Uploads)
	for _, k := range fi.files {
		ig.Go(func() error {
			if err := r.target.Delete(igctx, k); err != nil {
				return fmt.Errorf("delete old index %s: %w", k, err)
			}
			return nil
		})
	}
	if err := ig.Wait(); err != nil {
		return res, fmt.Errorf("prune: %w (no pack was deleted; the repository is consistent; run prune again)", err)
	}

	// 7. Now the packs.
	var mu sync.Mutex
	var freed int64
	var errs []error
	deleted := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Uploads)
	del := func(key string, size int64) {
		g.Go(func() error {
			if err := r.target.Delete(gctx, key); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
				mu.Unlock()
				return nil
			}
			mu.Lock()
			freed += size
			deleted++
			mu.Unlock()
			return nil
		})
	}
	for _, p := range doomed {
		del(PackKey(p.ID), int64(p.Size))
	}
	for _, oi := range unindexed {
		del(oi.Key, oi.Size)
	}
	_ = g.Wait()
	res.BytesFreed = freed - written
	res.PacksAfter = res.PacksBefore + len(newPacks) - deleted
	res.BytesAfter = res.BytesBefore + written - freed
	if len(errs) > 0 {
		return res, fmt.Errorf("prune: %d packs could not be deleted (they are unindexed now; the next prune removes them): %w", len(errs), errors.Join(errs...))
	}
	return res, ctx.Err()
}

func containsPack(ps []*idxPack, p *idxPack) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// usage collects the blobs that snapshots use.
type usage struct {
	r     *Repository
	mu    sync.Mutex
	used  map[chunk.ID]struct{} // data blobs and page blobs
	pages map[chunk.ID]struct{} // map pages already read
	added map[chunk.ID]struct{} // when set, blobs newly added to used
}

// use adds a blob to the used set. Called with u.mu held.
func (u *usage) use(id chunk.ID) {
	if _, ok := u.used[id]; ok {
		return
	}
	u.used[id] = struct{}{}
	if u.added != nil {
		u.added[id] = struct{}{}
	}
}

// addSnapshots reads the manifests and their map pages (those not read
// before) and adds every blob they use; locate finds a blob's copies.
// Manifests deleted meanwhile are skipped. It returns the number of
// manifests read.
func (u *usage) addSnapshots(ctx context.Context, refs []SnapshotRef, locate func(chunk.ID) []blobPos) (int, error) {
	r := u.r
	snaps := make([]*Snapshot, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for i, ref := range refs {
		g.Go(func() error {
			s, err := r.LoadSnapshot(gctx, ref)
			if errors.Is(err, targets.ErrNotFound) {
				return nil // forgotten meanwhile
			}
			snaps[i] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	n := 0
	var todo []chunk.ID
	u.mu.Lock()
	for _, s := range snaps {
		if s == nil {
			continue
		}
		n++
		for _, d := range s.Disks {
			for _, p := range d.Pages {
				if !p.Digests.IsZero() {
					u.use(p.Digests)
				}
				if p.Map.IsZero() {
					continue
				}
				u.use(p.Map)
				if _, ok := u.pages[p.Map]; !ok {
					u.pages[p.Map] = struct{}{}
					todo = append(todo, p.Map)
				}
			}
		}
	}
	u.mu.Unlock()
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for _, id := range todo {
		g.Go(func() error {
			plain, err := r.readAnyCopy(gctx, id, locate(id))
			if err != nil {
				return fmt.Errorf("map page %s: %w", id.Short(), err)
			}
			// Only the blob ids matter here; verify checks the layout.
			exts, err := DecodeMapPage(plain, 0, math.MaxInt64)
			if err != nil {
				return fmt.Errorf("map page %s: %w", id.Short(), err)
			}
			u.mu.Lock()
			for _, e := range exts {
				u.use(e.Blob)
			}
			u.mu.Unlock()
			return nil
		})
	}
	return n, g.Wait()
}

// readAnyCopy reads the first copy of a blob that decodes.
func (r *Repository) readAnyCopy(ctx context.Context, id chunk.ID, locs []blobPos) ([]byte, error) {
	if len(locs) == 0 {
		return nil, fmt.Errorf("blob %s is not in the index: %w; run drctl verify", id.Short(), ErrDamaged)
	}
	var first error
	for _, l := range locs {
		plain, err := r.readBlobAt(ctx, l)
		if err == nil {
			return plain, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// repackBlobs copies the needed blobs of the given packs, in their stored
// form (no re-encryption; each is checked against its id first), into new
// packs and uploads them. It returns the new packs and their total size.
func (r *Repository) repackBlobs(ctx context.Context, plans []*packPlan) ([]chunk.IndexPack, int64, error) {
	if len(plans) == 0 {
		return nil, 0, nil
	}
	type stored struct {
		b    chunk.PackedBlob
		data []byte
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan stored, 16)

	var (
		out      []chunk.IndexPack
		written  int64
		consumed = make(chan error, 1)
	)
	go func() {
		packers := map[chunk.BlobType]*chunk.Packer{}
		flush := func(t chunk.BlobType) error {
			p := packers[t]
			delete(packers, t)
			if p == nil || p.Count() == 0 {
				return nil
			}
			data, id, blobs := p.Finish(r.codec)
			if _, err := r.target.Put(ctx, PackKey(id), data); err != nil {
				return fmt.Errorf("upload pack %s: %w", id.Short(), err)
			}
			out = append(out, chunk.IndexPack{ID: id, Size: uint32(len(data)), Blobs: blobs})
			written += int64(len(data))
			return nil
		}
		var err error
		for s := range ch {
			if err != nil {
				continue // drain
			}
			p := packers[s.b.Type]
			if p == nil {
				p = chunk.NewPacker(r.cfg.PackSize)
				packers[s.b.Type] = p
			}
			p.Add(s.b.Type, s.b.ID, s.data, int(s.b.RawLength))
			if p.Size() >= r.cfg.PackSize {
				if err = flush(s.b.Type); err != nil {
					cancel()
				}
			}
		}
		if err == nil {
			for _, t := range []chunk.BlobType{chunk.DataBlob, chunk.MetaBlob} {
				if err = flush(t); err != nil {
					break
				}
			}
			for t := range packers {
				if err == nil {
					err = flush(t)
				}
			}
		}
		consumed <- err
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for _, pl := range plans {
		g.Go(func() error {
			data, _, err := r.target.Get(gctx, PackKey(pl.p.ID))
			if err != nil {
				return fmt.Errorf("read pack %s: %w", pl.p.ID.Short(), err)
			}
			var plain []byte
			for _, i := range pl.needed {
				b := pl.p.Blobs[i]
				end := int64(b.Offset) + int64(b.Length)
				if end > int64(len(data)) {
					return fmt.Errorf("blob %s lies past the end of pack %s: %w; run drctl verify", b.ID.Short(), pl.p.ID.Short(), ErrDamaged)
				}
				s := data[b.Offset:end]
				plain, err = r.codec.Decode(plain[:0], s, b.ID)
				if err != nil {
					return fmt.Errorf("blob %s in pack %s: %w: %w; run drctl verify", b.ID.Short(), pl.p.ID.Short(), ErrDamaged, err)
				}
				select {
				case ch <- stored{b: b, data: s}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	gerr := g.Wait()
	if gerr != nil {
		cancel() // no point in uploading the last packs
	}
	close(ch)
	cerr := <-consumed
	if gerr != nil {
		return nil, 0, gerr
	}
	if cerr != nil {
		return nil, 0, cerr
	}
	return out, written, nil
}

// newIndexKey names an index file: writer id, time, random suffix (the
// same scheme as Writer's).
func (r *Repository) newIndexKey() string {
	return fmt.Sprintf("%s%s-%s-%s", indexPrefix, r.opts.WriterID, time.Now().UTC().Format("20060102T150405Z"), randomHex(4))
}

// writeIndexFiles writes packs into index files of at most perFile blobs
// (a pack is never split) and returns their names, including those written
// before a failure.
func (r *Repository) writeIndexFiles(ctx context.Context, packs []chunk.IndexPack, perFile int) ([]string, error) {
	var names []string
	var batch []chunk.IndexPack
	count := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		key := r.newIndexKey()
		if _, err := r.target.PutIfAbsent(ctx, key, chunk.EncodeIndexFile(r.codec, chunk.IndexFile{Packs: batch})); err != nil {
			return fmt.Errorf("save index %s: %w", key, err)
		}
		names = append(names, key)
		batch, count = nil, 0
		return nil
	}
	for _, p := range packs {
		if count > 0 && count+len(p.Blobs) > perFile {
			if err := flush(); err != nil {
				return names, err
			}
		}
		batch = append(batch, p)
		count += len(p.Blobs)
	}
	return names, flush()
}

// pruneRecheck looks at what changed since step 1. It returns the doomed
// packs that a snapshot committed since then needs (packs holding a blob
// it uses of which no other copy stays), and the packs that looked
// unindexed in step 1 but that index files written since then list.
func (r *Repository) pruneRecheck(ctx context.Context, fi *fullIndex, u *usage, known, ours map[string]bool, doomed []*idxPack, kept map[chunk.ID]struct{}) ([]*idxPack, map[chunk.ID]bool, error) {
	old := map[string]bool{}
	for _, f := range fi.files {
		old[f] = true
	}
	newer, bad, err := r.loadFullIndex(ctx, func(k string) bool { return !old[k] && !ours[k] })
	if err != nil {
		return nil, nil, err
	}
	if len(bad) > 0 {
		return nil, nil, fmt.Errorf("index file %s cannot be read: %w", bad[0].key, ErrDamaged)
	}
	lateIndexed := map[chunk.ID]bool{}
	for id := range newer.packs {
		lateIndexed[id] = true
	}

	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	var fresh []SnapshotRef
	for _, ref := range refs {
		if !known[ref.Key] {
			fresh = append(fresh, ref)
		}
	}
	if len(fresh) == 0 {
		return nil, lateIndexed, nil
	}
	// Collect what the new snapshots use beyond the first pass; their
	// pages may sit in packs that only the newer index files list.
	u.added = map[chunk.ID]struct{}{}
	if _, err := u.addSnapshots(ctx, fresh, func(id chunk.ID) []blobPos {
		return append(fi.locations(id), newer.locations(id)...)
	}); err != nil {
		return nil, nil, err
	}
	doomedSet := map[*idxPack]bool{}
	for _, p := range doomed {
		doomedSet[p] = true
	}
	var rescued []*idxPack
	for id := range u.added {
		if _, ok := kept[id]; ok {
			continue
		}
		locs := fi.locations(id)
		stays := false
		for _, l := range locs {
			if !doomedSet[l.pack] {
				stays = true
				break
			}
		}
		if stays || len(locs) == 0 {
			continue
		}
		rescued = append(rescued, locs[0].pack)
		delete(doomedSet, locs[0].pack)
	}
	return rescued, lateIndexed, nil
}
