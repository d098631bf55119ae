package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// Prune keeps, whatever the size of the repository, nothing per blob in
// memory but two sets of bounded size (the blobs seen, while it looks for
// duplicates, then the blobs in use) and the locations of metadata blobs
// (map pages and digests, about one for every 4000 data blobs). Per pack
// it keeps a packInfo (about 150 bytes, some 10 MiB per TiB stored). The
// index files are streamed, a few at a time, in three passes: scan,
// plan and mark; the sweep streams them once more to rewrite the ones
// that list swept packs.

// packInfo is what prune knows of one pack.
type packInfo struct {
	listed  bool  // the target lists the object
	size    int64 // listed size
	mod     int64 // listed modification time, Unix ns; 0 = unknown
	indexed bool  // an index file read in the scan lists it
	isize   uint32
	nblobs  int32
	stored  int64 // bytes of its blobs
	used    int64 // bytes of its blobs in use (every copy)
	needed  int64 // bytes of the copies prune keeps here
	neededN int32 // number of those copies
	// condemned: a record read in the scan names the pack.
	condemned bool
	fate      uint8
	pass      uint8 // the last pass that visited it (a pack may be listed twice)
	emitted   bool  // the index rewrite has it in a file that stays
}

// metaLoc is one stored copy of a metadata blob.
type metaLoc struct {
	pack chunk.ID
	b    chunk.PackedBlob
}

// candidate is a blob seen more than once in the scan, probably stored
// twice: the plan collects every copy and keeps one.
type candidate struct {
	locs   []candLoc
	used   bool
	keeper int // index into locs of the copy kept, -1 = none
}

type candLoc struct {
	pack   chunk.ID
	i      int32 // position in the pack's index entry
	length uint32
}

// candidateBytes is what a candidate costs with two copies.
const candidateBytes = 200

// Passes over the index.
const (
	passScan = iota + 1
	passPlan
	passMark
)

// pruneState is what one prune run has learnt.
type pruneState struct {
	opts PruneOptions
	now  time.Time

	files     []string       // index files read in step 1, in name order
	cache     *indexCache    // of those, the ones the passes after the first need not read
	fileBlobs map[string]int // blob entries each lists (and each mark file)
	packs     map[chunk.ID]*packInfo
	blobs     int // blob entries in the index files read
	meta      map[chunk.ID][]metaLoc
	cands     map[chunk.ID]*candidate
	candsFull bool // duplicate detection gave up at its memory share

	mu    sync.Mutex // guards used and pages while map pages are read
	used  blobSet
	nUsed int
	pages map[chunk.ID]struct{} // map pages already read

	records   []*condemnation // with their packs' blob lists dropped
	known     map[string]bool // snapshot keys read in step 1
	unindexed []chunk.ID      // to condemn, sorted

	// The mark's output.
	markFiles []string
	newPacks  int
	written   int64
}

// fresh reports whether a pack is younger than the grace period. A pack
// whose age the target does not tell counts as fresh.
func (st *pruneState) fresh(p *packInfo) bool {
	return st.opts.Grace > 0 && (p.mod == 0 || st.now.Sub(time.Unix(0, p.mod)) < st.opts.Grace)
}

// pruneScan is step 1: the records, the snapshots, the index (pass 1),
// the packs, and the blobs in use.
func (r *Repository) pruneScan(ctx context.Context, res *PruneResult, opts PruneOptions) (*pruneState, error) {
	st := &pruneState{
		opts:      opts,
		now:       time.Now(),
		fileBlobs: map[string]int{},
		packs:     map[chunk.ID]*packInfo{},
		meta:      map[chunk.ID][]metaLoc{},
		cands:     map[chunk.ID]*candidate{},
		pages:     map[chunk.ID]struct{}{},
		known:     map[string]bool{},
		cache:     newIndexCache(opts.MemoryLimit / 4),
	}
	names, err := r.listCondemned(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	err = r.eachRecord(ctx, names, func(name string, err error) error {
		// Dropping a mark is always safe: its packs stay until a later
		// prune condemns them again.
		r.log.Warn("prune: dropping a damaged condemned record", "record", name, "err", err)
		if opts.DryRun {
			return nil
		}
		if err := r.target.Delete(ctx, condemnedPrefix+name); err != nil {
			return fmt.Errorf("remove damaged record %s: %w", name, err)
		}
		return nil
	}, func(name string, rec *condemnedRecord) {
		// The sweep reads the blob lists again, one record at a time.
		for i := range rec.Packs {
			rec.Packs[i].Blobs = nil
		}
		st.records = append(st.records, &condemnation{name: name, rec: rec})
	})
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}

	// Snapshots before index files: a manifest is committed only once its
	// blobs are indexed, so the index read next covers every snapshot
	// listed here. Later ones are the re-check's business (4a).
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	keys, sizes, err := r.listIndexFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var indexBytes int64
	for _, n := range sizes {
		indexBytes += n
	}
	// An index entry takes at least 36 bytes, which bounds the number of
	// blobs before the first one is read.
	seen := newBlobSet(int(indexBytes/36), opts.MemoryLimit)
	maxCands := int(opts.MemoryLimit / 8 / candidateBytes)
	var conflict error
	// A file in memory: its bytes, the plaintext, and the decoded entries
	// (56 bytes each, against at least 36 stored).
	cost := func(k string) int64 { return sizes[k] * 3 }
	err = r.streamIndex(ctx, keys, cost, st.cache, func(key string, f *chunk.IndexFile, ferr error) error {
		switch {
		case errors.Is(ferr, errIndexGone):
			return nil
		case ferr != nil:
			return fmt.Errorf("prune: index file %s cannot be read (%v): %w; prune will not run on a damaged index: run drctl repair index", key, ferr, ErrDamaged)
		}
		st.files = append(st.files, key)
		n := 0
		for _, p := range f.Packs {
			n += len(p.Blobs)
			info := st.packs[p.ID]
			if info == nil {
				info = &packInfo{}
				st.packs[p.ID] = info
			}
			if info.indexed {
				// Listed twice (a sweep interrupted between writing the
				// new index and deleting the old): the same pack.
				if (info.isize != p.Size || int(info.nblobs) != len(p.Blobs)) && conflict == nil {
					conflict = fmt.Errorf("prune: index files disagree: pack %s: %d bytes and %d blobs, then %s says %d bytes and %d blobs: %w",
						p.ID.Short(), info.isize, info.nblobs, key, p.Size, len(p.Blobs), ErrDamaged)
				}
				continue
			}
			info.indexed, info.isize, info.nblobs, info.pass = true, p.Size, int32(len(p.Blobs)), passScan
			for _, b := range p.Blobs {
				info.stored += int64(b.Length)
				st.blobs++
				if b.Type == chunk.MetaBlob {
					st.meta[b.ID] = append(st.meta[b.ID], metaLoc{pack: p.ID, b: b})
				}
				if seen.add(b.ID) {
					continue
				}
				if _, ok := st.cands[b.ID]; !ok {
					if len(st.cands) >= maxCands {
						st.candsFull = true
						continue
					}
					st.cands[b.ID] = &candidate{keeper: -1}
				}
			}
		}
		st.fileBlobs[key] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if conflict != nil {
		return nil, conflict
	}
	if !seen.exact() || st.candsFull {
		r.log.Info("prune: the index is larger than the memory limit allows to hold exactly; a few unused blobs may stay until a prune with a higher limit",
			"blobs", st.blobs, "limit", opts.MemoryLimit, "candidates_capped", st.candsFull)
	}

	// Packs after index files, so that every pack indexed is listed.
	if err := r.target.List(ctx, dataPrefix, func(oi targets.ObjectInfo) error {
		id, ok := parsePackKey(oi.Key)
		if !ok || PackKey(id) != oi.Key {
			return nil // not a pack; verify reports it
		}
		info := st.packs[id]
		if info == nil {
			info = &packInfo{}
			st.packs[id] = info
		}
		info.listed, info.size = true, oi.Size
		if !oi.ModTime.IsZero() {
			info.mod = oi.ModTime.UnixNano()
		}
		res.PacksBefore++
		res.BytesBefore += oi.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("prune: list packs: %w", err)
	}
	for _, id := range sortedIDs(st.packs) {
		info := st.packs[id]
		if !info.indexed {
			continue
		}
		if !info.listed {
			return nil, fmt.Errorf("prune: pack %s is indexed but missing: %w; run drctl verify", id.Short(), ErrDamaged)
		}
		if info.size != int64(info.isize) {
			return nil, fmt.Errorf("prune: pack %s has %d bytes, the index says %d: %w; run drctl verify", id.Short(), info.size, info.isize, ErrDamaged)
		}
	}
	for _, c := range st.records {
		for _, p := range c.rec.Packs {
			if info := st.packs[p.ID]; info != nil {
				info.condemned = true
			}
		}
	}
	res.IndexFilesBefore = len(st.files)
	res.PacksAfter, res.BytesAfter = res.PacksBefore, res.BytesBefore
	res.IndexFilesAfter = res.IndexFilesBefore

	st.used = reuseBlobSet(seen, st.blobs, opts.MemoryLimit)
	seen = nil
	for _, ref := range refs {
		st.known[ref.Key] = true
	}
	n, err := r.pruneUse(ctx, st, refs, func(id chunk.ID) []metaLoc { return st.meta[id] })
	if errors.Is(err, ErrDamaged) {
		return nil, fmt.Errorf("prune: %w; prune changes nothing while a snapshot cannot be read: run drctl verify to see which, then forget it or repair the repository", err)
	}
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res.Snapshots = n
	res.BlobsUsed = st.nUsed
	return st, nil
}

// fileCost estimates the memory an index file takes while it is read,
// from the blobs it lists.
func (st *pruneState) fileCost(key string) int64 {
	return int64(st.fileBlobs[key]) * 3 * 45
}

// use adds a blob to the used set. Called with st.mu held.
func (st *pruneState) use(id chunk.ID) {
	if st.used.add(id) {
		st.nUsed++
	}
}

// pruneUse reads the manifests and their map pages (those not read
// before) and adds every blob they use; locate finds a metadata blob's
// copies. Manifests deleted meanwhile are skipped. It returns the number
// of manifests read.
func (r *Repository) pruneUse(ctx context.Context, st *pruneState, refs []SnapshotRef, locate func(chunk.ID) []metaLoc) (int, error) {
	n := 0
	// Manifests in batches, so that their page lists are not all in
	// memory at once.
	const batch = 64
	for start := 0; start < len(refs); start += batch {
		part := refs[start:min(start+batch, len(refs))]
		snaps := make([]*Snapshot, len(part))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(r.opts.Downloads)
		for i, ref := range part {
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
		var todo []chunk.ID
		st.mu.Lock()
		for _, s := range snaps {
			if s == nil {
				continue
			}
			n++
			for _, d := range s.Disks {
				for _, p := range d.Pages {
					if !p.Digests.IsZero() {
						st.use(p.Digests)
					}
					if p.Map.IsZero() {
						continue
					}
					st.use(p.Map)
					if _, ok := st.pages[p.Map]; !ok {
						st.pages[p.Map] = struct{}{}
						todo = append(todo, p.Map)
					}
				}
			}
		}
		st.mu.Unlock()
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(r.opts.Downloads)
		for _, id := range todo {
			g.Go(func() error {
				plain, err := r.readMetaCopy(gctx, id, locate(id))
				if err != nil {
					return fmt.Errorf("map page %s: %w", id.Short(), err)
				}
				// Only the blob ids matter here; verify checks the layout.
				exts, err := DecodeMapPage(plain, 0, math.MaxInt64)
				if err != nil {
					return fmt.Errorf("map page %s: %w", id.Short(), err)
				}
				st.mu.Lock()
				for _, e := range exts {
					st.use(e.Blob)
				}
				st.mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// readMetaCopy reads the first copy of a metadata blob that decodes.
func (r *Repository) readMetaCopy(ctx context.Context, id chunk.ID, locs []metaLoc) ([]byte, error) {
	if len(locs) == 0 {
		return nil, fmt.Errorf("blob %s is not in the index: %w; run drctl verify", id.Short(), ErrDamaged)
	}
	var first error
	for _, l := range locs {
		plain, err := r.readStoredBlob(ctx, l.pack, l.b)
		if err == nil {
			return plain, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// prunePlan is step 2: a second pass over the index counts, per pack, the
// bytes in use and collects every copy of the duplicate candidates; then
// one copy of each duplicate is chosen and each pack gets its fate.
func (r *Repository) prunePlan(ctx context.Context, st *pruneState, res *PruneResult) error {
	unusedCands := 0
	err := r.streamIndex(ctx, st.files, st.fileCost, st.cache, func(key string, f *chunk.IndexFile, ferr error) error {
		if ferr != nil {
			return fmt.Errorf("prune: index file %s changed during prune: %w", key, ferr)
		}
		for _, p := range f.Packs {
			info := st.packs[p.ID]
			if info == nil || info.pass >= passPlan {
				continue
			}
			info.pass = passPlan
			for i, b := range p.Blobs {
				used := st.used.has(b.ID)
				if c := st.cands[b.ID]; c != nil {
					if len(c.locs) == 0 && !used && !info.condemned {
						unusedCands++
					}
					c.locs = append(c.locs, candLoc{pack: p.ID, i: int32(i), length: b.Length})
					if used {
						c.used = true
						info.used += int64(b.Length)
					}
					continue
				}
				if used {
					info.used += int64(b.Length)
					info.needed += int64(b.Length)
					info.neededN++
				} else if !info.condemned {
					res.BlobsUnused++
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	res.BlobsUnused += unusedCands

	// A blob stored twice keeps the copy in the pack most likely to stay
	// as it is: one not condemned, a fresh one, else the most used one.
	usedFrac := func(p *packInfo) float64 {
		if p.stored == 0 {
			return 0
		}
		return float64(p.used) / float64(p.stored)
	}
	better := func(a, b candLoc) bool {
		pa, pb := st.packs[a.pack], st.packs[b.pack]
		if pa.condemned != pb.condemned {
			return pb.condemned
		}
		if fa, fb := st.fresh(pa), st.fresh(pb); fa != fb {
			return fa
		}
		if ua, ub := usedFrac(pa), usedFrac(pb); ua != ub {
			return ua > ub
		}
		if c := bytes.Compare(a.pack[:], b.pack[:]); c != 0 {
			return c < 0
		}
		return a.i < b.i
	}
	for _, c := range st.cands {
		if len(c.locs) > 1 {
			res.DuplicateBlobs++
		}
		if !c.used || len(c.locs) == 0 {
			continue
		}
		c.keeper = 0
		for i := 1; i < len(c.locs); i++ {
			if better(c.locs[i], c.locs[c.keeper]) {
				c.keeper = i
			}
		}
		k := c.locs[c.keeper]
		p := st.packs[k.pack]
		p.needed += int64(k.length)
		p.neededN++
	}

	for _, id := range sortedIDs(st.packs) {
		p := st.packs[id]
		switch {
		case !p.listed || p.condemned:
			// A record covers it; its sweep decides.
		case !p.indexed:
			if st.fresh(p) {
				res.UnindexedKeptFresh++
				continue
			}
			st.unindexed = append(st.unindexed, id)
		default:
			unused := p.stored - p.needed
			res.BytesUnused += unused
			switch {
			case unused == 0 && p.nblobs > 0:
				p.fate = packKeep
			case st.fresh(p):
				p.fate = packKeep
				res.PacksKeptFresh++
			case p.neededN == 0:
				p.fate = packDelete
			case float64(unused) > st.opts.MaxUnusedFraction*float64(p.stored):
				p.fate = packRepack
				res.PacksRepacked++
				res.BlobsRepacked += int(p.neededN)
				res.BytesRepacked += p.needed
			default:
				p.fate = packKeep
			}
			if p.fate != packKeep {
				res.PacksCondemned++
			}
		}
	}
	res.PacksCondemned += len(st.unindexed)
	return nil
}

// needs reports whether prune keeps the copy of b at position i of pack:
// it is in use, and, if stored more than once, the copy chosen.
func (st *pruneState) needs(pack chunk.ID, i int, b chunk.PackedBlob) bool {
	if !st.used.has(b.ID) {
		return false
	}
	c := st.cands[b.ID]
	if c == nil || c.keeper < 0 {
		return true
	}
	k := c.locs[c.keeper]
	return k.pack == pack && int(k.i) == i
}
