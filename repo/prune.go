package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// Prune defaults.
const (
	// DefaultPruneGrace is how old a pack must be before prune may condemn
	// it. Leases protect the packs of the writers that take them; the
	// grace period also covers writers that do not (older versions).
	DefaultPruneGrace = time.Hour
	// DefaultMaxUnusedFraction is the share of unused bytes above which a
	// partly used pack is repacked.
	DefaultMaxUnusedFraction = 0.2
	// DefaultBlobsPerIndexFile bounds the index files prune writes.
	DefaultBlobsPerIndexFile = 50000
	// DefaultPruneMemory is the default PruneOptions.MemoryLimit: exact
	// up to about 1.6 million blobs (800 GiB of 512 KiB chunks); beyond,
	// a filter that keeps about 3 unused blobs in 10 million up to 33
	// million blobs (16 TiB), and more as the repository grows past that.
	DefaultPruneMemory = 128 << 20
	// DefaultPruneWaitTimeout bounds how long PruneOptions.Wait waits for
	// leases: two TTLs, by when every writer that was running has either
	// finished a normal run or been presumed dead.
	DefaultPruneWaitTimeout = 2 * DefaultLeaseTTL
	// DefaultPrunePollInterval is how often a waiting prune reads the
	// leases again.
	DefaultPrunePollInterval = 10 * time.Second
	// DefaultStaleUploadAge: a pack upload still incomplete after a day
	// is dead (a writer gives up on a part after minutes of retries).
	DefaultStaleUploadAge = 24 * time.Hour
)

// PruneOptions tune Prune. The zero value is the safe default.
type PruneOptions struct {
	// Grace is the minimum age (by the target's modification time) of a
	// pack that prune condemns. 0 means DefaultPruneGrace; a negative
	// value means no grace at all: leases still protect running writers
	// (tests use it to make races bite).
	Grace time.Duration
	// MaxUnusedFraction: a pack whose unused bytes exceed this share is
	// repacked. 0 means DefaultMaxUnusedFraction; a negative value means
	// any unused byte triggers a repack; 1 or more never repacks.
	MaxUnusedFraction float64
	// BlobsPerIndexFile bounds the new index files (0: the default).
	BlobsPerIndexFile int
	// MemoryLimit bounds, in bytes, each of the two sets of blob ids
	// prune builds one after the other (0: DefaultPruneMemory). A set is
	// exact while it fits (about 80 bytes a blob), else a Bloom filter of
	// at most this size: a repository of any size is pruned within it,
	// at the cost of keeping a few unused blobs for a later prune. A
	// quarter of it more caches index files between passes; add 32 MiB of
	// index files read ahead and about 150 bytes a pack for the whole.
	MemoryLimit int64
	// DryRun plans and reports without changing anything.
	DryRun bool
	// Wait makes prune, once it has marked, wait for the leases that
	// block the sweep to end or expire, and sweep in the same call. By
	// default prune sweeps what no lease blocks and leaves the rest to
	// the next prune.
	Wait bool
	// WaitTimeout bounds Wait (0: DefaultPruneWaitTimeout). When it runs
	// out, prune sweeps what it can, as without Wait.
	WaitTimeout time.Duration
	// PollInterval is how often a waiting prune looks at the leases (0:
	// DefaultPrunePollInterval).
	PollInterval time.Duration
	// StaleUploadAge is the age past which an incomplete upload of a pack
	// (an S3 multipart upload whose writer was killed) is aborted (0:
	// DefaultStaleUploadAge).
	StaleUploadAge time.Duration
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
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = DefaultPruneMemory
	}
	if o.StaleUploadAge <= 0 {
		o.StaleUploadAge = DefaultStaleUploadAge
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultPruneWaitTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPrunePollInterval
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

	// Mark: what this run condemned.
	PacksCondemned     int   `json:"packs_condemned"`      // packs put in this run's condemned record
	PacksRepacked      int   `json:"packs_repacked"`       // partly used packs whose used blobs this run copied
	PacksWritten       int   `json:"packs_written"`        // new packs holding the repacked blobs
	BlobsRepacked      int   `json:"blobs_repacked"`       // blobs copied into new packs
	BytesRepacked      int64 `json:"bytes_repacked"`       // stored bytes copied
	PacksKeptFresh     int   `json:"packs_kept_fresh"`     // would go, but younger than the grace period
	UnindexedKeptFresh int   `json:"unindexed_kept_fresh"` // unindexed, younger than the grace period

	// Sweep: what this run deleted, of its own record and earlier ones.
	PacksDeleted     int   `json:"packs_deleted"`     // indexed packs with nothing in use
	RepackedDeleted  int   `json:"repacked_deleted"`  // packs whose used blobs a repack copied
	UnindexedDeleted int   `json:"unindexed_deleted"` // packs no index lists
	PacksRescued     int   `json:"packs_rescued"`     // condemned, but kept: a snapshot committed meanwhile uses them
	BytesFreed       int64 `json:"bytes_freed"`
	RecordsSwept     int   `json:"records_swept"` // condemned records done with

	// What waits for a later prune, and why.
	RecordsWaiting int         `json:"records_waiting"`
	PacksWaiting   int         `json:"packs_waiting"`
	BytesWaiting   int64       `json:"bytes_waiting"`
	LeasesBlocking []LeaseInfo `json:"leases_blocking,omitempty"`
	LeasesExpired  int         `json:"leases_expired"` // leases of dead writers removed
	// ObjectsLocked counts deletes refused by S3 Object Lock retention:
	// those objects stay until it ends, and a later prune retries them.
	ObjectsLocked int `json:"objects_locked"`
	// UploadsAborted counts incomplete pack uploads of killed writers
	// (S3 multipart uploads, invisible to listings but billed) aborted.
	UploadsAborted int `json:"uploads_aborted"`

	IndexFilesBefore int `json:"index_files_before"`
	IndexFilesAfter  int `json:"index_files_after"`
}

// Pack fates.
const (
	packKeep = iota
	packDelete
	packRepack
)

// packPlan is a pack to repack and the positions of the blobs to copy.
type packPlan struct {
	p      chunk.IndexPack
	needed []int32
}

// condemnation is a condemned record prune knows.
type condemnation struct {
	name string
	rec  *condemnedRecord
}

// Prune removes what no snapshot uses: packs whose blobs are all unused,
// packs left unindexed by interrupted runs, and the unused parts of packs
// that are mostly unused (by copying their used blobs into new packs).
//
// Replications run meanwhile, without a repository lock. Each holds a
// lease (leases/<id>, see NewWriter) taken before it loads the index; the
// lease names the condemned records that existed then, which the writer
// honours: it stores again, rather than deduplicates against, a blob
// that a record condemns (unless a copy outside condemned packs exists).
// Prune works in two phases, mark and sweep; the sweep of a record waits
// until no live lease fails to name it, i.e. until every writer that could
// have deduplicated against its packs has committed or died.
//
// Memory stays within PruneOptions.MemoryLimit plus a small amount per
// pack, whatever the number of blobs: the index files are streamed, and
// the sets of blobs seen and used become Bloom filters when they would
// not fit (see pruneState). A false positive keeps garbage; nothing a
// snapshot uses is ever taken for garbage.
//
// The steps, and why a crash at any point leaves a repository in which
// every committed snapshot is complete:
//
//  0. Take a prune lease; refuse if another prune holds a live one (two
//     prunes would delete each other's index files).
//  1. Read the condemned records; list the snapshots, then stream every
//     index file (which therefore covers every snapshot listed), list the
//     packs, read the snapshots and their map pages: the used set.
//  2. Plan, streaming the index again. A pack whose blobs are all unused
//     goes; an unindexed pack goes; a pack with a mix goes after its used
//     blobs are copied if its unused share exceeds MaxUnusedFraction. A
//     blob stored twice keeps one copy. A pack younger than Grace, or
//     already in a record, is left out.
//  3. Mark, streaming the index a third time, in batches of about
//     BlobsPerIndexFile blobs: upload the new packs (repacked blobs) and
//     index them in a new index file, then write a record condemned/<name>
//     listing the packs to delete and the blobs that go with them.
//     Nothing is deleted. A crash before a record leaves unindexed or
//     extra indexed copies; after it, a record that any later prune sweeps.
//  4. Sweep, for every record (this run's and earlier ones) that no live
//     lease blocks. A lease blocks a record it does not name, unless it
//     has expired: not renewed for its TTL, by the target's clock (the
//     modification time of prune's own lease, just renewed). With Wait,
//     prune polls until nothing blocks or the wait times out.
//     a. List the snapshots again, after the lease check: every writer
//     that could use a condemned blob has committed or died by now. A pack of a
//     record that holds a blob a snapshot uses, with no copy known to
//     stay, is rescued (kept, and stays indexed); an unindexed pack that
//     an index file now lists is rescued too.
//     b. Rewrite (create-only, new names) the index files that list a
//     swept pack, without it, merging small files on the way. A crash
//     leaves old and new files side by side: every blob indexed at least
//     once.
//     c. Delete the index files rewritten (never newer ones). A crash or
//     failure leaves some old files; they list only packs that still
//     exist; prune stops at the first failure.
//     d. Delete the swept packs. By now no index file lists them; a crash
//     leaves unindexed packs that the record still names.
//     e. Delete the records, once all their packs are gone (a rescued
//     pack becomes an ordinary one). A record left by a crash names packs
//     already gone, which the next sweep skips.
//
// A snapshot committed after 4a comes from a writer whose lease named the
// record, so it references no blob that only the swept packs held. The
// writer enforces its side: it stops, and refuses to commit, once it could
// not renew its lease for five sixths of the TTL (a prune waits a full
// TTL), so an expired lease is a dead or fenced-off writer.
//
// A replication reuses its parent snapshot's blobs without asking the
// index; that is safe because forget always keeps a VM's newest snapshot,
// provided one VM is replicated by one writer at a time.
//
// When nothing is to be removed but the index is spread over small files,
// prune still merges them (4b, 4c). At the end the handle's cached index
// is dropped (ReloadIndex); running Writers keep theirs.
func (r *Repository) Prune(ctx context.Context, opts PruneOptions) (PruneResult, error) {
	opts.fill()
	var res PruneResult
	res.DryRun = opts.DryRun

	// 0. Exclude other prunes, and keep the lease fresh: a prune that lost
	// it stops, since another may have started.
	var own *heldLease
	if !opts.DryRun {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		var err error
		if own, err = r.takePruneLease(ctx); err != nil {
			return res, err
		}
		defer func() {
			if err := own.release(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("prune: could not release its lease (it expires)", "err", err)
			}
		}()
		own.keep(ctx, func(err error) { cancel(err) })
	}

	// 1. What exists and what is used.
	st, err := r.pruneScan(ctx, &res, opts)
	if err != nil {
		return res, err
	}
	// 2. Plan.
	if err := r.prunePlan(ctx, st, &res); err != nil {
		return res, err
	}
	if opts.DryRun {
		return res, r.pruneDryRun(ctx, st, opts, &res)
	}
	defer r.ReloadIndex()

	// 3. Mark.
	if res.PacksCondemned > 0 {
		if err := r.pruneMark(ctx, st, &res); err != nil {
			return res, err
		}
		res.PacksWritten = st.newPacks
		res.PacksAfter, res.BytesAfter = res.PacksBefore+st.newPacks, res.BytesBefore+st.written
	}

	// 4. Sweep.
	err = r.pruneSweep(ctx, st, own, opts, &res)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	if err == nil {
		r.abortStaleUploads(ctx, opts, &res)
	}
	return res, err
}

// abortStaleUploads is step 5: the parts of pack uploads cut short by a
// kill stay in an S3 bucket, unlisted and billed, until someone aborts
// them (or a lifecycle rule does). A failure only warns: the bucket may
// not grant s3:ListBucketMultipartUploads, and nothing else depends on it.
func (r *Repository) abortStaleUploads(ctx context.Context, opts PruneOptions, res *PruneResult) {
	c, ok := targets.As[targets.UploadCleaner](r.target)
	if !ok {
		return
	}
	n, err := c.AbortStaleUploads(ctx, dataPrefix, time.Now().Add(-opts.StaleUploadAge))
	res.UploadsAborted = n
	if n > 0 {
		r.log.Info("prune: aborted incomplete pack uploads left by killed writers", "uploads", n)
	}
	if err != nil {
		r.log.Warn("prune: could not abort incomplete pack uploads (they stay billed until a lifecycle rule removes them)", "err", err)
	}
}

// pruneMark is step 3: a third pass over the index writes, batch by batch,
// the repacked blobs, their index file and a condemned record.
func (r *Repository) pruneMark(ctx context.Context, st *pruneState, res *PruneResult) error {
	perFile := st.opts.BlobsPerIndexFile
	rec := &condemnedRecord{Version: 1, Prune: r.opts.WriterID, Created: st.now.UTC()}
	var plans []*packPlan
	blobs := 0
	flush := func() error {
		if len(rec.Packs) == 0 {
			return nil
		}
		newPacks, written, err := r.repackBlobs(ctx, plans)
		if err != nil {
			return fmt.Errorf("prune: repack: %w (nothing was deleted)", err)
		}
		for _, p := range newPacks {
			st.packs[p.ID] = &packInfo{listed: true, size: int64(p.Size), indexed: true, isize: p.Size, nblobs: int32(len(p.Blobs)), pass: passMark}
		}
		st.newPacks += len(newPacks)
		st.written += written
		files, counts, err := r.writeIndexFiles(ctx, newPacks, perFile)
		for i, f := range files {
			st.markFiles = append(st.markFiles, f)
			st.fileBlobs[f] = counts[i]
		}
		if err != nil {
			return fmt.Errorf("prune: index the repacked blobs: %w (nothing was deleted)", err)
		}
		name := r.newRecordName()
		if err := r.writeCondemned(ctx, name, rec); err != nil {
			return fmt.Errorf("prune: mark: %w (nothing was deleted)", err)
		}
		for i := range rec.Packs {
			rec.Packs[i].Blobs = nil
		}
		st.records = append(st.records, &condemnation{name: name, rec: rec})
		rec = &condemnedRecord{Version: 1, Prune: r.opts.WriterID, Created: st.now.UTC()}
		plans, blobs = nil, 0
		return nil
	}
	err := r.streamIndex(ctx, st.files, st.fileCost, st.cache, func(key string, f *chunk.IndexFile, ferr error) error {
		if ferr != nil {
			return fmt.Errorf("prune: index file %s changed during prune: %w (nothing was deleted)", key, ferr)
		}
		for _, p := range f.Packs {
			info := st.packs[p.ID]
			if info == nil || info.pass >= passMark {
				continue
			}
			info.pass = passMark
			switch info.fate {
			case packDelete:
				cp := condemnedPack{ID: p.ID, Kind: condemnDelete, Size: int64(p.Size)}
				for _, b := range p.Blobs {
					cp.Blobs = appendBlobID(cp.Blobs, b.ID)
				}
				rec.Packs = append(rec.Packs, cp)
			case packRepack:
				cp := condemnedPack{ID: p.ID, Kind: condemnRepack, Size: int64(p.Size)}
				pl := &packPlan{p: p}
				for i, b := range p.Blobs {
					if st.needs(p.ID, i, b) {
						pl.needed = append(pl.needed, int32(i))
					} else {
						cp.Blobs = appendBlobID(cp.Blobs, b.ID)
					}
				}
				rec.Packs = append(rec.Packs, cp)
				plans = append(plans, pl)
			default:
				continue
			}
			blobs += len(p.Blobs)
			if blobs >= perFile {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range st.unindexed {
		rec.Packs = append(rec.Packs, condemnedPack{ID: id, Kind: condemnUnindexed, Size: st.packs[id].size})
		if len(rec.Packs) >= perFile {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// takePruneLease takes a prune's lease, unless another prune holds one.
// Both of two prunes that start together may back off; never neither.
func (r *Repository) takePruneLease(ctx context.Context) (*heldLease, error) {
	own, err := r.takeLease(ctx, purposePrune, nil)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	leases, now, err := r.leasesNow(ctx, own)
	if err == nil {
		for _, l := range leases {
			if l.Purpose == purposePrune && !l.expired(now) {
				err = fmt.Errorf("prune: %w: lease %s (host %s, pid %d, renewed %s)", ErrPruneRunning, l.ID, l.Host, l.PID, l.Renewed.UTC().Format(time.RFC3339))
				break
			}
		}
	}
	if err != nil {
		if rerr := own.release(context.WithoutCancel(ctx)); rerr != nil {
			r.log.Warn("prune: could not release its lease (it expires)", "err", rerr)
		}
		return nil, err
	}
	return own, nil
}

// leasesNow lists the other leases, and returns as the target's current
// time the modification time of own, which the caller has just written.
func (r *Repository) leasesNow(ctx context.Context, own *heldLease) ([]*leaseState, time.Time, error) {
	all, err := r.listLeases(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	var now time.Time
	others := all[:0]
	for _, l := range all {
		if own != nil && l.ID == own.id {
			now = l.Renewed
			continue
		}
		others = append(others, l)
	}
	return others, now, nil
}

// classifyRecords splits the records into those no live lease blocks and
// those that wait, and returns the blocking leases and the expired ones.
func classifyRecords(records []*condemnation, leases []*leaseState, now time.Time) (sweepable, waiting []*condemnation, blocking, expired []*leaseState) {
	var live []*leaseState
	for _, l := range leases {
		if l.expired(now) {
			expired = append(expired, l)
		} else {
			live = append(live, l)
		}
	}
	seen := map[string]bool{}
	for _, c := range records {
		blocked := false
		for _, l := range live {
			if l.blocks(c.name) {
				blocked = true
				if !seen[l.ID] {
					seen[l.ID] = true
					blocking = append(blocking, l)
				}
			}
		}
		if blocked {
			waiting = append(waiting, c)
		} else {
			sweepable = append(sweepable, c)
		}
	}
	return sweepable, waiting, blocking, expired
}

// pruneDryRun estimates the sweep: the records no live lease blocks go at
// once, by the local clock (a dry run writes nothing to ask the target's);
// a new record would be blocked by every running writer.
func (r *Repository) pruneDryRun(ctx context.Context, st *pruneState, opts PruneOptions, res *PruneResult) error {
	leases, err := r.listLeases(ctx)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	records := st.records
	if res.PacksCondemned > 0 {
		rec := &condemnedRecord{}
		for _, id := range sortedIDs(st.packs) {
			p := st.packs[id]
			switch {
			case !p.listed || !p.indexed || p.condemned:
			case p.fate == packDelete:
				rec.Packs = append(rec.Packs, condemnedPack{ID: id, Kind: condemnDelete, Size: p.size})
			case p.fate == packRepack:
				rec.Packs = append(rec.Packs, condemnedPack{ID: id, Kind: condemnRepack, Size: p.size})
			}
		}
		for _, id := range st.unindexed {
			rec.Packs = append(rec.Packs, condemnedPack{ID: id, Kind: condemnUnindexed, Size: st.packs[id].size})
		}
		records = append(slices.Clip(records), &condemnation{name: "(this run)", rec: rec})
	}
	sweepable, waiting, blocking, expired := classifyRecords(records, leases, time.Now())
	res.LeasesExpired = len(expired)
	for _, l := range blocking {
		res.LeasesBlocking = append(res.LeasesBlocking, l.LeaseInfo)
	}
	st.countWaiting(waiting, res)
	res.RecordsSwept = len(sweepable)
	var freed int64
	deleted := 0
	gone := map[chunk.ID]bool{}
	for _, c := range sweepable {
		for _, p := range c.rec.Packs {
			if info := st.packs[p.ID]; info == nil || !info.listed || gone[p.ID] {
				continue
			}
			gone[p.ID] = true
			countSwept(res, p.Kind)
			freed += p.Size
			deleted++
		}
	}
	// Repacked blobs fill packs of the configured size.
	res.PacksWritten = int(math.Ceil(float64(res.BytesRepacked) / float64(r.cfg.PackSize)))
	res.BytesFreed = freed - res.BytesRepacked
	res.PacksAfter = res.PacksBefore - deleted + res.PacksWritten
	res.BytesAfter = res.BytesBefore - res.BytesFreed
	blobs := res.BlobsRepacked
	for id, p := range st.packs {
		if p.indexed && !gone[id] {
			blobs += int(p.nblobs)
		}
	}
	res.IndexFilesAfter = (blobs + opts.BlobsPerIndexFile - 1) / opts.BlobsPerIndexFile
	return nil
}

// countWaiting counts what the records that wait hold.
func (st *pruneState) countWaiting(waiting []*condemnation, res *PruneResult) {
	res.RecordsWaiting = len(waiting)
	for _, c := range waiting {
		for _, p := range c.rec.Packs {
			if info := st.packs[p.ID]; info != nil && info.listed {
				res.PacksWaiting++
				res.BytesWaiting += p.Size
			}
		}
	}
}

func countSwept(res *PruneResult, kind string) {
	switch kind {
	case condemnRepack:
		res.RepackedDeleted++
	case condemnUnindexed:
		res.UnindexedDeleted++
	default:
		res.PacksDeleted++
	}
}

// pruneSweep is step 4.
func (r *Repository) pruneSweep(ctx context.Context, st *pruneState, own *heldLease, opts PruneOptions, res *PruneResult) error {
	var sweepable, waiting []*condemnation
	var blocking, expired []*leaseState
	deadline := time.Now().Add(opts.WaitTimeout)
	waited := false
	for {
		// The renewal makes prune's own lease the target's clock. A
		// failed renewal only makes that clock late, so fewer leases
		// look expired.
		if err := own.renew(ctx); errors.Is(err, ErrLeaseLost) {
			return fmt.Errorf("prune: %w", err)
		} else if err != nil {
			r.log.Warn("prune: could not renew its lease", "err", err)
		}
		leases, now, err := r.leasesNow(ctx, own)
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		sweepable, waiting, blocking, expired = classifyRecords(st.records, leases, now)
		if !opts.Wait || len(waiting) == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			r.log.Warn("prune: stopped waiting for writers; a later prune sweeps the rest", "leases", len(blocking), "records", len(waiting))
			break
		}
		if !waited {
			r.log.Info("prune: waiting for writers that started before the mark", "leases", len(blocking), "records", len(waiting))
			waited = true
		}
		t := time.NewTimer(opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("prune: wait for leases: %w (nothing was deleted)", ctx.Err())
		case <-t.C:
		}
	}
	for _, l := range blocking {
		res.LeasesBlocking = append(res.LeasesBlocking, l.LeaseInfo)
	}
	st.countWaiting(waiting, res)
	// Expired leases are their holders' no more: a holder stops once it
	// cannot renew (heldLease.check), well before a prune sees the lease
	// expired, and a renewal never brings a removed lease back.
	for _, l := range expired {
		if err := r.target.Delete(ctx, l.key); err != nil {
			r.log.Warn("prune: could not remove an expired lease", "lease", l.ID, "err", err)
			continue
		}
		r.log.Info("prune: removed the lease of a writer presumed dead", "lease", l.ID, "host", l.Host, "pid", l.PID, "renewed", l.Renewed)
		res.LeasesExpired++
	}

	// What the sweepable records hold that still exists.
	doomed := map[chunk.ID]bool{}
	kind := map[chunk.ID]string{}
	var unindexed []chunk.ID
	for _, c := range sweepable {
		for _, cp := range c.rec.Packs {
			info := st.packs[cp.ID]
			if _, dup := kind[cp.ID]; info == nil || !info.listed || dup {
				continue // gone already (an interrupted sweep), or in two records
			}
			kind[cp.ID] = cp.Kind
			switch {
			case info.indexed && cp.Kind == condemnUnindexed:
				// Its writer indexed it after the mark.
				res.PacksRescued++
			case info.indexed:
				doomed[cp.ID] = true
			default:
				// Unindexed, or indexed no more after an interrupted sweep.
				unindexed = append(unindexed, cp.ID)
			}
		}
	}

	// 4a. Snapshots committed meanwhile.
	if len(doomed)+len(unindexed) > 0 {
		rescued, lateIndexed, err := r.pruneRecheck(ctx, st, sweepable, doomed)
		if err != nil {
			return fmt.Errorf("prune: re-check snapshots: %w (nothing was deleted)", err)
		}
		for _, id := range rescued {
			r.log.Warn("prune: keeping a condemned pack that a snapshot committed meanwhile uses", "pack", id.Short())
		}
		res.PacksRescued += len(rescued)
		keep := unindexed[:0]
		for _, id := range unindexed {
			if lateIndexed[id] {
				res.PacksRescued++
				continue
			}
			keep = append(keep, id)
		}
		unindexed = keep
	}

	// 4b. Index files without the swept packs.
	written, replaced, err := r.pruneRewriteIndex(ctx, st, doomed)
	res.IndexFilesAfter = len(st.files) + len(st.markFiles) + len(written) - len(replaced)
	if err != nil {
		return fmt.Errorf("prune: write index: %w (nothing was deleted)", err)
	}

	// 4c. Old index files go before any pack does.
	if len(replaced) > 0 {
		ig, igctx := errgroup.WithContext(ctx)
		ig.SetLimit(r.opts.Uploads)
		var lockedMu sync.Mutex
		locked := 0
		for _, k := range replaced {
			ig.Go(func() error {
				if err := r.target.Delete(igctx, k); err != nil {
					if errors.Is(err, targets.ErrLocked) {
						lockedMu.Lock()
						locked++
						lockedMu.Unlock()
						return nil
					}
					return fmt.Errorf("delete old index %s: %w", k, err)
				}
				return nil
			})
		}
		if err := ig.Wait(); err != nil {
			return fmt.Errorf("prune: %w (no pack was deleted; the repository is consistent; run prune again)", err)
		}
		if locked > 0 {
			// An index file under Object Lock retention stays, and so must
			// every pack it may list: packs are older than their index, so
			// they are retained at least as long. A later prune goes on.
			res.ObjectsLocked += locked
			r.log.Info("prune: objects under Object Lock retention stay until it ends; a later prune removes them", "index_files", locked)
			return nil
		}
	}

	// 4d. Now the packs.
	var mu sync.Mutex
	var freed int64
	var errs []error
	deleted := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Uploads)
	del := func(id chunk.ID, size int64) {
		g.Go(func() error {
			if err := r.target.Delete(gctx, PackKey(id)); err != nil {
				mu.Lock()
				if errors.Is(err, targets.ErrLocked) {
					res.ObjectsLocked++
				} else {
					errs = append(errs, fmt.Errorf("delete pack %s: %w", id.Short(), err))
				}
				mu.Unlock()
				return nil
			}
			mu.Lock()
			freed += size
			deleted++
			countSwept(res, kind[id])
			mu.Unlock()
			return nil
		})
	}
	for _, id := range sortedIDs(doomed) {
		del(id, st.packs[id].size)
	}
	for _, id := range unindexed {
		del(id, st.packs[id].size)
	}
	_ = g.Wait()
	res.BytesFreed = freed - st.written
	res.PacksAfter = res.PacksBefore + st.newPacks - deleted
	res.BytesAfter = res.BytesBefore + st.written - freed
	if len(errs) > 0 {
		return fmt.Errorf("prune: %d packs could not be deleted (they are unindexed now; the next prune removes them): %w", len(errs), errors.Join(errs...))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("prune: %w", err)
	}

	if res.ObjectsLocked > 0 {
		// The records stay, so a later prune retries the locked packs.
		r.log.Info("prune: packs under Object Lock retention stay until it ends; a later prune removes them", "packs", res.ObjectsLocked)
		return nil
	}

	// 4e. The records are done with.
	for _, c := range sweepable {
		if err := r.target.Delete(ctx, condemnedPrefix+c.name); err != nil {
			return fmt.Errorf("prune: remove condemned record %s: %w (its packs are gone; the next prune removes it)", c.name, err)
		}
		res.RecordsSwept++
	}
	return nil
}

// sortedIDs returns the keys of m in order.
func sortedIDs[V any](m map[chunk.ID]V) []chunk.ID {
	return slices.SortedFunc(maps.Keys(m), func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
}

// pruneRecheck looks at what changed since step 1, after the lease check.
// It takes out of doomed, and returns, the packs whose record lists a blob
// some snapshot uses (one read in step 1, or committed since) of which no
// copy is known to stay; and it returns the packs that index files
// written since step 1 list (packs that looked unindexed when they were
// condemned). A repacked pack's record lists only the blobs not copied:
// the copies of the others stay.
func (r *Repository) pruneRecheck(ctx context.Context, st *pruneState, sweepable []*condemnation, doomed map[chunk.ID]bool) ([]chunk.ID, map[chunk.ID]bool, error) {
	old := map[string]bool{}
	for _, f := range st.files {
		old[f] = true
	}
	for _, f := range st.markFiles {
		old[f] = true
	}
	// Snapshots first, as in step 1: the newer index files then cover
	// every snapshot listed. Those files hold what writers stored during
	// this prune, so they are read whole.
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	newer, bad, err := r.loadFullIndex(ctx, func(k string) bool { return !old[k] })
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
	var fresh []SnapshotRef
	for _, ref := range refs {
		if !st.known[ref.Key] {
			fresh = append(fresh, ref)
		}
	}
	if len(fresh) > 0 {
		// Their pages may sit in packs that only the newer files list.
		if _, err := r.pruneUse(ctx, st, fresh, func(id chunk.ID) []metaLoc {
			locs := slices.Clip(st.meta[id])
			for _, l := range newer.locations(id) {
				locs = append(locs, metaLoc{pack: l.pack.ID, b: l.blob()})
			}
			return locs
		}); err != nil {
			return nil, nil, err
		}
	}
	stays := func(id chunk.ID) bool {
		if len(newer.locations(id)) > 0 {
			return true
		}
		if c := st.cands[id]; c != nil {
			for _, l := range c.locs {
				if !doomed[l.pack] {
					return true
				}
			}
		}
		return false
	}
	var rescued []chunk.ID
	for _, c := range sweepable {
		rec, _, err := r.readCondemned(ctx, c.name)
		if err != nil {
			return nil, nil, err
		}
		for _, cp := range rec.Packs {
			if !doomed[cp.ID] {
				continue
			}
			for _, id := range cp.blobIDs() {
				if st.used.has(id) && !stays(id) {
					rescued = append(rescued, cp.ID)
					delete(doomed, cp.ID)
					break
				}
			}
		}
	}
	return rescued, lateIndexed, nil
}

// pruneRewriteIndex is step 4b: it writes again, without the doomed packs,
// the index files that list one, and merges the small files (under half
// of BlobsPerIndexFile) when there are two or more. It returns the files
// written and those they replace; the others are left as they are.
func (r *Repository) pruneRewriteIndex(ctx context.Context, st *pruneState, doomed map[chunk.ID]bool) (written, replaced []string, err error) {
	perFile := st.opts.BlobsPerIndexFile
	files := append(slices.Clip(st.files), st.markFiles...)
	small := 0
	for _, f := range files {
		if st.fileBlobs[f] < perFile/2 {
			small++
		}
	}
	merge := small >= 2
	if len(doomed) == 0 && !merge {
		return nil, nil, nil
	}
	var batch []chunk.IndexPack
	count := 0
	flush := func() error {
		names, _, err := r.writeIndexFiles(ctx, batch, perFile)
		written = append(written, names...)
		batch, count = nil, 0
		return err
	}
	err = r.streamIndex(ctx, files, st.fileCost, st.cache, func(key string, f *chunk.IndexFile, ferr error) error {
		if ferr != nil {
			return fmt.Errorf("index file %s changed during prune: %w", key, ferr)
		}
		rewrite := merge && st.fileBlobs[key] < perFile/2
		for _, p := range f.Packs {
			rewrite = rewrite || doomed[p.ID]
		}
		if !rewrite {
			for _, p := range f.Packs {
				if info := st.packs[p.ID]; info != nil {
					info.emitted = true
				}
			}
			return nil
		}
		replaced = append(replaced, key)
		for _, p := range f.Packs {
			info := st.packs[p.ID]
			if doomed[p.ID] || (info != nil && info.emitted) {
				continue
			}
			if info != nil {
				info.emitted = true
			}
			if count > 0 && count+len(p.Blobs) > perFile {
				if err := flush(); err != nil {
					return err
				}
			}
			batch = append(batch, p)
			count += len(p.Blobs)
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return written, replaced, err
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
// (a pack is never split) and returns their names and the blobs each
// lists, including those written before a failure.
func (r *Repository) writeIndexFiles(ctx context.Context, packs []chunk.IndexPack, perFile int) ([]string, []int, error) {
	var names []string
	var counts []int
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
		counts = append(counts, count)
		batch, count = nil, 0
		return nil
	}
	for _, p := range packs {
		if count > 0 && count+len(p.Blobs) > perFile {
			if err := flush(); err != nil {
				return names, counts, err
			}
		}
		batch = append(batch, p)
		count += len(p.Blobs)
	}
	return names, counts, flush()
}
