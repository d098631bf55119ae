package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/units"
	"github.com/drctl/drctl/targets"
)

// ---------------------------------------------------------------------
// The full index: every index file's listing, duplicates included. The
// merged chunk.Index that restore uses keeps one location per blob; verify
// and prune need to know every copy and which index files name each pack.

// idxPack is one pack as the index files describe it.
type idxPack struct {
	ID    chunk.ID
	Size  uint32
	Blobs []chunk.PackedBlob
	Files []string // index files listing the pack
}

// blobPos is one stored copy of a blob.
type blobPos struct {
	pack *idxPack
	i    int32
}

func (p blobPos) blob() chunk.PackedBlob { return p.pack.Blobs[p.i] }

type fullIndex struct {
	files []string // index files read, sorted
	packs map[chunk.ID]*idxPack
	blobs map[chunk.ID]blobPos   // first copy
	dups  map[chunk.ID][]blobPos // further copies (rare)
	// conflicts are packs that two index files describe differently.
	conflicts []string
}

func newFullIndex() *fullIndex {
	return &fullIndex{packs: map[chunk.ID]*idxPack{}, blobs: map[chunk.ID]blobPos{}, dups: map[chunk.ID][]blobPos{}}
}

func (fi *fullIndex) add(key string, f chunk.IndexFile) {
	fi.files = append(fi.files, key)
	for _, p := range f.Packs {
		if old, ok := fi.packs[p.ID]; ok {
			old.Files = append(old.Files, key)
			if old.Size != p.Size || len(old.Blobs) != len(p.Blobs) {
				fi.conflicts = append(fi.conflicts, fmt.Sprintf("pack %s: index %s says %d bytes and %d blobs, index %s says %d bytes and %d blobs",
					p.ID.Short(), old.Files[0], old.Size, len(old.Blobs), key, p.Size, len(p.Blobs)))
			}
			continue
		}
		e := &idxPack{ID: p.ID, Size: p.Size, Blobs: p.Blobs, Files: []string{key}}
		fi.packs[p.ID] = e
		for i, b := range e.Blobs {
			pos := blobPos{pack: e, i: int32(i)}
			if _, ok := fi.blobs[b.ID]; ok {
				fi.dups[b.ID] = append(fi.dups[b.ID], pos)
			} else {
				fi.blobs[b.ID] = pos
			}
		}
	}
}

// locations lists every indexed copy of a blob.
func (fi *fullIndex) locations(id chunk.ID) []blobPos {
	first, ok := fi.blobs[id]
	if !ok {
		return nil
	}
	return append([]blobPos{first}, fi.dups[id]...)
}

// sortedPacks returns the packs ordered by id.
func (fi *fullIndex) sortedPacks() []*idxPack {
	out := make([]*idxPack, 0, len(fi.packs))
	for _, p := range fi.packs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].ID[:], out[j].ID[:]) < 0 })
	return out
}

type badIndexFile struct {
	key string
	err error
}

// loadFullIndex reads the index files (all of them, or those keep accepts)
// and merges them in name order, so the result does not depend on download
// order. Files that cannot be decoded come back in bad; a file that
// vanished between list and read (a concurrent prune replaced it) is
// skipped.
func (r *Repository) loadFullIndex(ctx context.Context, keep func(key string) bool) (*fullIndex, []badIndexFile, error) {
	keys, sizes, err := r.listIndexFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	if keep != nil {
		keys = slices.DeleteFunc(keys, func(k string) bool { return !keep(k) })
	}
	fi := newFullIndex()
	var bad []badIndexFile
	err = r.streamIndex(ctx, keys, func(k string) int64 { return sizes[k] }, nil, func(k string, f *chunk.IndexFile, err error) error {
		switch {
		case errors.Is(err, errIndexGone):
		case err != nil:
			bad = append(bad, badIndexFile{key: k, err: err})
		default:
			fi.add(k, *f)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return fi, bad, nil
}

// listPacks lists the pack objects on the target by id. Objects under data/
// whose names are not pack names are returned separately.
func (r *Repository) listPacks(ctx context.Context) (map[chunk.ID]targets.ObjectInfo, []string, error) {
	out := map[chunk.ID]targets.ObjectInfo{}
	var foreign []string
	err := r.target.List(ctx, dataPrefix, func(oi targets.ObjectInfo) error {
		id, ok := parsePackKey(oi.Key)
		if !ok || PackKey(id) != oi.Key {
			foreign = append(foreign, oi.Key)
			return nil
		}
		out[id] = oi
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list packs: %w", err)
	}
	return out, foreign, nil
}

// readBlobAt reads and decodes one stored copy of a blob.
func (r *Repository) readBlobAt(ctx context.Context, pos blobPos) ([]byte, error) {
	return r.readStoredBlob(ctx, pos.pack.ID, pos.blob())
}

// readStoredBlob reads and decodes blob b of pack.
func (r *Repository) readStoredBlob(ctx context.Context, pack chunk.ID, b chunk.PackedBlob) ([]byte, error) {
	stored, err := r.target.GetRange(ctx, PackKey(pack), int64(b.Offset), int64(b.Length))
	if err != nil {
		return nil, fmt.Errorf("read blob %s from pack %s: %w", b.ID.Short(), pack.Short(), err)
	}
	plain, err := r.codec.Decode(make([]byte, 0, b.RawLength), stored, b.ID)
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w: %w", b.ID.Short(), pack.Short(), ErrDamaged, err)
	}
	return plain, nil
}

// pageLen is the number of disk bytes page p of d covers.
func pageLen(d Disk, p int) int64 {
	start := int64(p) * d.PageSize
	return min(d.PageSize, d.Size-start)
}

// ---------------------------------------------------------------------
// Verify.

// Subset selects part of the packs for a data check: a fraction of them
// (0 < Fraction ≤ 1) or a byte budget. Zero means no subset.
type Subset struct {
	Fraction float64 `json:"fraction,omitempty"`
	Bytes    int64   `json:"bytes,omitempty"`
}

// IsZero reports whether no subset is set.
func (s Subset) IsZero() bool { return s.Fraction == 0 && s.Bytes == 0 }

func (s Subset) String() string {
	switch {
	case s.Bytes > 0:
		return units.Bytes(s.Bytes)
	case s.Fraction > 0:
		return strconv.FormatFloat(s.Fraction*100, 'f', -1, 64) + "%"
	}
	return "none"
}

// ParseSubset reads a subset as the CLI takes it: "1/5" (one fifth of the
// packs), "20%", "0.2", or a byte budget such as "500M", "2GiB", "10G".
func ParseSubset(s string) (Subset, error) {
	s = strings.TrimSpace(s)
	bad := func() (Subset, error) {
		return Subset{}, fmt.Errorf("subset %q: give a fraction (1/5, 20%%, 0.2) or a size (500M, 2GiB)", s)
	}
	frac := func(f float64) (Subset, error) {
		if !(f > 0 && f <= 1) || math.IsNaN(f) {
			return Subset{}, fmt.Errorf("subset %q: the fraction must be above 0 and at most 1", s)
		}
		return Subset{Fraction: f}, nil
	}
	if a, b, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(a, 64)
		d, err2 := strconv.ParseFloat(b, 64)
		if err1 != nil || err2 != nil || d == 0 {
			return bad()
		}
		return frac(n / d)
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return bad()
		}
		return frac(f / 100)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return frac(f)
	}
	// A size: digits then a unit.
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return bad()
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || n <= 0 {
		return bad()
	}
	unit := strings.ToLower(strings.TrimSpace(s[i:]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "b"), "i")
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]
	if mult == 0 {
		return bad()
	}
	return Subset{Bytes: int64(n * mult)}, nil
}

// VerifyOptions choose how deep Verify looks. The structural check always
// runs; ReadData adds a full data check; a Subset (without ReadData) checks
// part of the packs, continuing at Cursor.
type VerifyOptions struct {
	// ReadData downloads and checks every pack.
	ReadData bool
	// Subset downloads and checks part of the packs (ignored with
	// ReadData).
	Subset Subset
	// Cursor is the NextCursor of the previous subset run ("" starts at
	// the lowest pack id). Packs are taken in pack id order from the
	// cursor on, wrapping around, so that N runs of 1/N check every pack.
	Cursor string
}

// SnapshotDisk names what a damaged object affects: a disk of a snapshot,
// or the whole snapshot when Disk is empty.
type SnapshotDisk struct {
	VM       string `json:"vm"`
	Snapshot string `json:"snapshot"`
	Disk     string `json:"disk,omitempty"`
}

// Problem kinds.
const (
	ProblemIndex    = "index"    // an index file cannot be read, or index files disagree
	ProblemPack     = "pack"     // a pack is missing, has the wrong size or content, or a bad header
	ProblemBlob     = "blob"     // a blob is missing from the index, or its stored copy is damaged
	ProblemSnapshot = "snapshot" // a manifest cannot be read
	ProblemPage     = "page"     // a map or digest page cannot be read or is malformed
	ProblemDisk     = "disk"     // a manifest's disk description is inconsistent
)

// Problem is one piece of damage and what it affects.
type Problem struct {
	Kind    string         `json:"kind"`
	Object  string         `json:"object"`
	Message string         `json:"message"`
	Affects []SnapshotDisk `json:"affects,omitempty"`
}

// Note is something worth knowing that is not damage.
type Note struct {
	Kind    string `json:"kind"`
	Object  string `json:"object"`
	Message string `json:"message"`
}

// DamagedSnapshot summarises the damage of one snapshot.
type DamagedSnapshot struct {
	VM       string    `json:"vm"`
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	// Disks are the damaged disks; empty when the manifest itself is
	// unreadable.
	Disks    []string `json:"disks,omitempty"`
	Manifest bool     `json:"manifest_damaged,omitempty"`
}

// DataCheck describes the data part of a verify run.
type DataCheck struct {
	Mode          string `json:"mode"` // none | all | subset
	Subset        Subset `json:"subset,omitzero"`
	PacksTotal    int    `json:"packs_total"`
	PacksChecked  int    `json:"packs_checked"`
	BytesChecked  int64  `json:"bytes_checked"`
	BlobsChecked  int64  `json:"blobs_checked"`
	Cursor        string `json:"cursor,omitempty"`
	NextCursor    string `json:"next_cursor,omitempty"`
	CycleComplete bool   `json:"cycle_complete,omitempty"` // the run reached the highest pack id
}

// VerifyReport is the result of Verify, printable as JSON or with Summary.
type VerifyReport struct {
	Target       string    `json:"target"`
	RepositoryID string    `json:"repository_id"`
	Started      time.Time `json:"started"`
	Duration     float64   `json:"duration_seconds"`

	IndexFiles     int   `json:"index_files"`
	Packs          int   `json:"packs"`
	PackBytes      int64 `json:"pack_bytes"`
	Blobs          int   `json:"blobs"`
	DuplicateBlobs int   `json:"duplicate_blobs"`
	UnindexedPacks int   `json:"unindexed_packs"`
	UnindexedBytes int64 `json:"unindexed_bytes"`
	Snapshots      int   `json:"snapshots"`
	VMs            int   `json:"vms"`
	Disks          int   `json:"disks"`
	MapPages       int   `json:"map_pages"`
	DigestPages    int   `json:"digest_pages"`
	Extents        int64 `json:"extents"`

	Data DataCheck `json:"data"`

	Problems []Problem         `json:"problems"`
	Damaged  []DamagedSnapshot `json:"damaged_snapshots"`
	Notes    []Note            `json:"notes,omitempty"`
}

// OK reports whether no damage was found.
func (rep *VerifyReport) OK() bool { return len(rep.Problems) == 0 }

// Summary renders the report for people.
func (rep *VerifyReport) Summary() string {
	var b strings.Builder
	rep.WriteSummary(&b)
	return b.String()
}

// WriteSummary writes the human summary to w.
func (rep *VerifyReport) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "repository %s at %s\n", rep.RepositoryID, rep.Target)
	fmt.Fprintf(&b, "  %s, %s (%s), %s", plural(rep.IndexFiles, "index file"), plural(rep.Packs, "pack"), units.Bytes(rep.PackBytes), plural(rep.Blobs, "blob"))
	if rep.DuplicateBlobs > 0 {
		fmt.Fprintf(&b, " (%d stored twice; prune keeps one copy)", rep.DuplicateBlobs)
	}
	fmt.Fprintf(&b, "\n  %s of %s, %s, %s, %s, %s\n",
		plural(rep.Snapshots, "snapshot"), plural(rep.VMs, "VM"), plural(rep.Disks, "disk"),
		plural(rep.MapPages, "map page"), plural(rep.DigestPages, "digest page"), plural(int(rep.Extents), "extent"))
	switch rep.Data.Mode {
	case "all":
		fmt.Fprintf(&b, "  data: read all %d packs (%s), %d blobs checked\n", rep.Data.PacksChecked, units.Bytes(rep.Data.BytesChecked), rep.Data.BlobsChecked)
	case "subset":
		fmt.Fprintf(&b, "  data: read %d of %d packs (%s, subset %s), %d blobs checked",
			rep.Data.PacksChecked, rep.Data.PacksTotal, units.Bytes(rep.Data.BytesChecked), rep.Data.Subset, rep.Data.BlobsChecked)
		if rep.Data.CycleComplete {
			b.WriteString("; a full pass over the packs is complete")
		}
		b.WriteString("\n")
	default:
		b.WriteString("  data: not read (structure only; use --read-data or --read-data-subset)\n")
	}
	if rep.UnindexedPacks > 0 {
		fmt.Fprintf(&b, "  %s (%s): left by an interrupted run; prune removes them\n", plural(rep.UnindexedPacks, "unindexed pack"), units.Bytes(rep.UnindexedBytes))
	}
	for _, n := range rep.Notes {
		if n.Kind == "unindexed" {
			continue
		}
		fmt.Fprintf(&b, "  note: %s %s: %s\n", n.Kind, n.Object, n.Message)
	}
	if rep.OK() {
		fmt.Fprintf(&b, "no damage found (%.1fs)\n", rep.Duration)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "DAMAGE: %s, %s affected\n", plural(len(rep.Problems), "problem"), plural(len(rep.Damaged), "snapshot"))
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "  %s %s: %s\n", p.Kind, p.Object, p.Message)
		const maxShown = 5
		for i, a := range p.Affects {
			if i == maxShown {
				fmt.Fprintf(&b, "      … and %d more\n", len(p.Affects)-maxShown)
				break
			}
			if a.Disk == "" {
				fmt.Fprintf(&b, "      affects vm %s snapshot %s\n", a.VM, a.Snapshot)
			} else {
				fmt.Fprintf(&b, "      affects vm %s snapshot %s disk %s\n", a.VM, a.Snapshot, a.Disk)
			}
		}
	}
	if len(rep.Damaged) > 0 {
		b.WriteString("damaged snapshots:\n")
		for _, d := range rep.Damaged {
			what := "disks " + strings.Join(d.Disks, ", ")
			if d.Manifest {
				what = "manifest unreadable"
			}
			fmt.Fprintf(&b, "  %s %s %s: %s\n", d.VM, d.Snapshot, d.Time.Format(time.RFC3339), what)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// verifier holds the state of one Verify run.
type verifier struct {
	r   *Repository
	rep *VerifyReport
	fi  *fullIndex

	mu       sync.Mutex
	problems map[string]*problemAcc
	notes    []Note

	packBad map[chunk.ID]string // structurally damaged packs → problem key
	blobBad map[blobCopy]string // damaged blob copies → problem key

	unreadableIndexFiles int

	disks     []SnapshotDisk // disk table; affects refer to positions
	snapTimes map[SnapshotDisk]time.Time
}

type blobCopy struct{ blob, pack chunk.ID }

type problemAcc struct {
	Problem
	msgs    []string
	disks   map[int32]struct{}
	snapRef *SnapshotDisk
}

func (v *verifier) problem(key, kind, object, msg string) *problemAcc {
	p := v.problems[key]
	if p == nil {
		p = &problemAcc{Problem: Problem{Kind: kind, Object: object}, disks: map[int32]struct{}{}}
		v.problems[key] = p
	}
	if msg != "" && !containsString(p.msgs, msg) {
		p.msgs = append(p.msgs, msg)
	}
	return p
}

func (v *verifier) affect(key string, users []int32) {
	if p := v.problems[key]; p != nil {
		for _, u := range users {
			p.disks[u] = struct{}{}
		}
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Verify checks the repository and reports damage and what it affects.
//
// The structural check reads every index file, lists the packs once, reads
// every snapshot manifest and every distinct map and digest page, and checks
// that every blob a disk map references is indexed in a pack that exists
// with the indexed size. The data check (ReadData, or a Subset) downloads
// packs whole, one at a time per download slot, and checks each pack's
// hash, its header against the index and every blob against its id. The
// data check runs before the snapshot walk, so damage it finds is mapped to
// the snapshots and disks that reference it.
//
// The report is filled even when Verify fails (it is nil only when the
// options are invalid). Damage gives an error wrapping ErrDamaged; any
// other error means the check could not finish.
func (r *Repository) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	if s := opts.Subset; s.Fraction < 0 || s.Fraction > 1 || s.Bytes < 0 || math.IsNaN(s.Fraction) {
		return nil, fmt.Errorf("verify subset %+v: the fraction must be in (0,1] and the size positive", s)
	}
	start := time.Now()
	rep := &VerifyReport{Target: r.target.String(), RepositoryID: r.cfg.ID, Started: start.UTC(), Problems: []Problem{}, Damaged: []DamagedSnapshot{}}
	v := &verifier{
		r: r, rep: rep,
		problems:  map[string]*problemAcc{},
		packBad:   map[chunk.ID]string{},
		blobBad:   map[blobCopy]string{},
		snapTimes: map[SnapshotDisk]time.Time{},
	}
	err := v.run(ctx, opts)
	v.finish()
	rep.Duration = time.Since(start).Seconds()
	if err != nil {
		return rep, err
	}
	if !rep.OK() {
		return rep, fmt.Errorf("verify found %s affecting %s: %w", plural(len(rep.Problems), "problem"), plural(len(rep.Damaged), "snapshot"), ErrDamaged)
	}
	return rep, nil
}

func (v *verifier) run(ctx context.Context, opts VerifyOptions) error {
	r := v.r
	// Index files first, then packs: a pack is uploaded before the index
	// file naming it, so an indexed pack missing from the later listing is
	// really missing.
	fi, bad, err := r.loadFullIndex(ctx, nil)
	if err != nil {
		return err
	}
	v.fi = fi
	v.rep.IndexFiles = len(fi.files) + len(bad)
	v.unreadableIndexFiles = len(bad)
	for _, b := range bad {
		v.problem("index:"+b.key, ProblemIndex, b.key,
			fmt.Sprintf("cannot be read (%v); the packs it lists look unindexed and blobs only it listed are missing: drctl repair index rebuilds its entries from the packs", b.err))
	}
	for _, c := range fi.conflicts {
		v.problem("conflict:"+c, ProblemIndex, "index files", c)
	}
	v.rep.Blobs = len(fi.blobs)
	v.rep.DuplicateBlobs = len(fi.dups)

	listed, foreign, err := r.listPacks(ctx)
	if err != nil {
		return err
	}
	for _, k := range foreign {
		v.notes = append(v.notes, Note{Kind: "foreign", Object: k, Message: "not a pack name; ignored"})
	}
	for id, p := range fi.packs {
		v.rep.Packs++
		v.rep.PackBytes += int64(p.Size)
		oi, ok := listed[id]
		key := "pack:" + id.String()
		switch {
		case !ok:
			v.problem(key, ProblemPack, PackKey(id), fmt.Sprintf("missing from the target (listed in %s)", strings.Join(p.Files, ", ")))
			v.packBad[id] = key
		case oi.Size != int64(p.Size):
			v.problem(key, ProblemPack, PackKey(id), fmt.Sprintf("has %d bytes on the target, the index says %d: truncated or replaced", oi.Size, p.Size))
			v.packBad[id] = key
		}
	}
	var unindexed []string
	for id, oi := range listed {
		if _, ok := fi.packs[id]; !ok {
			v.rep.UnindexedPacks++
			v.rep.UnindexedBytes += oi.Size
			unindexed = append(unindexed, oi.Key)
		}
	}
	sort.Strings(unindexed)
	hint := "left by an interrupted run; prune removes them"
	if len(bad) > 0 {
		hint = "left by an interrupted run, or listed in an index file that cannot be read"
	}
	for _, k := range unindexed {
		v.notes = append(v.notes, Note{Kind: "unindexed", Object: k, Message: "unindexed (" + hint + ")"})
	}

	if err := v.checkData(ctx, opts); err != nil {
		return err
	}
	return v.checkSnapshots(ctx)
}

// checkData downloads the selected packs and checks them.
func (v *verifier) checkData(ctx context.Context, opts VerifyOptions) error {
	packs := v.fi.sortedPacks()
	dc := &v.rep.Data
	dc.PacksTotal = len(packs)
	dc.Mode = "none"
	var sel []*idxPack
	switch {
	case opts.ReadData:
		dc.Mode = "all"
		sel = packs
	case !opts.Subset.IsZero():
		dc.Mode = "subset"
		dc.Subset = opts.Subset
		dc.Cursor = opts.Cursor
		sel, dc.NextCursor, dc.CycleComplete = selectSubset(packs, opts.Subset, opts.Cursor)
	default:
		return nil
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(v.r.opts.Downloads)
	for _, p := range sel {
		v.mu.Lock()
		_, broken := v.packBad[p.ID]
		v.mu.Unlock()
		if broken {
			continue // already known to be missing or truncated
		}
		g.Go(func() error { return v.checkPack(gctx, p) })
	}
	return g.Wait()
}

// selectSubset picks packs in id order from the cursor on, wrapping around.
func selectSubset(packs []*idxPack, s Subset, cursor string) (sel []*idxPack, next string, wrapped bool) {
	n := len(packs)
	if n == 0 {
		return nil, cursor, true
	}
	start := sort.Search(n, func(i int) bool { return packs[i].ID.String() >= cursor })
	if start == n {
		start = 0
	}
	count := n
	if s.Bytes > 0 {
		var sum int64
		count = 0
		for i := 0; i < n; i++ {
			sz := int64(packs[(start+i)%n].Size)
			if count > 0 && sum+sz > s.Bytes {
				break
			}
			sum += sz
			count++
		}
	} else if s.Fraction > 0 {
		count = int(math.Ceil(s.Fraction*float64(n) - 1e-9))
		count = max(1, min(n, count))
	}
	for i := 0; i < count; i++ {
		sel = append(sel, packs[(start+i)%n])
	}
	wrapped = start+count >= n
	if count == n {
		return sel, packs[start].ID.String(), true
	}
	return sel, packs[(start+count)%n].ID.String(), wrapped
}

// checkPack downloads one pack and checks it against its id, its header
// and the index.
func (v *verifier) checkPack(ctx context.Context, p *idxPack) error {
	key := PackKey(p.ID)
	pkey := "pack:" + p.ID.String()
	data, _, err := v.r.target.Get(ctx, key)
	if errors.Is(err, targets.ErrNotFound) {
		v.mu.Lock()
		v.problem(pkey, ProblemPack, key, "disappeared while verify ran (a concurrent prune, or lost)")
		v.packBad[p.ID] = pkey
		v.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pack %s: %w", p.ID.Short(), err)
	}
	var msgs []string
	if len(data) != int(p.Size) {
		msgs = append(msgs, fmt.Sprintf("read %d bytes, the index says %d", len(data), p.Size))
	}
	if chunk.PackID(data) != p.ID {
		msgs = append(msgs, "content does not hash to the pack id (corrupted)")
	}
	hdr, err := chunk.ParsePackHeader(v.r.codec, data)
	if err != nil {
		msgs = append(msgs, fmt.Sprintf("header unreadable: %v", err))
	} else if d := diffBlobs(hdr, p.Blobs); d != "" {
		msgs = append(msgs, "header disagrees with the index: "+d)
	}
	type badBlob struct {
		b   chunk.PackedBlob
		msg string
	}
	var bads []badBlob
	var plain []byte
	for _, b := range p.Blobs {
		end := int64(b.Offset) + int64(b.Length)
		if end > int64(len(data)) {
			bads = append(bads, badBlob{b, fmt.Sprintf("lies past the end of the %d-byte pack", len(data))})
			continue
		}
		plain, err = v.r.codec.DecodeVerify(plain[:0], data[b.Offset:end], b.ID)
		switch {
		case err != nil:
			bads = append(bads, badBlob{b, err.Error()})
		case len(plain) != int(b.RawLength):
			bads = append(bads, badBlob{b, fmt.Sprintf("decodes to %d bytes, the index says %d", len(plain), b.RawLength)})
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rep.Data.PacksChecked++
	v.rep.Data.BytesChecked += int64(len(data))
	v.rep.Data.BlobsChecked += int64(len(p.Blobs))
	for _, m := range msgs {
		v.problem(pkey, ProblemPack, key, m)
	}
	for _, bb := range bads {
		bkey := "blob:" + bb.b.ID.String() + "@" + p.ID.String()
		v.problem(bkey, ProblemBlob, fmt.Sprintf("%s blob %s in pack %s", bb.b.Type, bb.b.ID, p.ID), bb.msg)
		v.blobBad[blobCopy{bb.b.ID, p.ID}] = bkey
	}
	return nil
}

// diffBlobs compares a pack header with the index's list; "" if equal.
func diffBlobs(hdr, ix []chunk.PackedBlob) string {
	count := map[chunk.PackedBlob]int{}
	for _, b := range ix {
		count[b]++
	}
	extra := 0
	for _, b := range hdr {
		if count[b] > 0 {
			count[b]--
		} else {
			extra++
		}
	}
	missing := 0
	for _, c := range count {
		missing += c
	}
	if extra == 0 && missing == 0 {
		return ""
	}
	return fmt.Sprintf("%d header entries not in the index, %d index entries not in the header", extra, missing)
}

// checkSnapshots reads every manifest and every distinct page and maps the
// damage found so far onto snapshots and disks.
func (v *verifier) checkSnapshots(ctx context.Context) error {
	r := v.r
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return err
	}
	snaps := make([]*Snapshot, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for i, ref := range refs {
		g.Go(func() error {
			s, err := r.LoadSnapshot(gctx, ref)
			switch {
			case err == nil:
				snaps[i] = s
			case errors.Is(err, targets.ErrNotFound):
				v.mu.Lock()
				v.notes = append(v.notes, Note{Kind: "snapshot", Object: ref.Key, Message: "removed while verify ran (a concurrent forget)"})
				v.mu.Unlock()
			case errors.Is(err, ErrUnsupported):
				v.mu.Lock()
				v.notes = append(v.notes, Note{Kind: "snapshot", Object: ref.Key, Message: "written in a newer format; not checked (" + err.Error() + ")"})
				v.mu.Unlock()
			case errors.Is(err, ErrDamaged):
				v.mu.Lock()
				sd := SnapshotDisk{VM: ref.VM, Snapshot: ref.ID}
				p := v.problem("snapshot:"+ref.Key, ProblemSnapshot, ref.Key, "manifest cannot be read: "+err.Error())
				p.snapRef = &sd
				v.snapTimes[sd] = ref.Time
				v.mu.Unlock()
			default:
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	// Who uses which page. A page blob can serve several pages (identical
	// content), so a map page is decoded relative to its start and checked
	// against the shortest page length among its users.
	type mapUse struct {
		users  []int32
		minLen int64
		alloc  int64
	}
	maps := map[chunk.ID]*mapUse{}
	digests := map[chunk.ID][]int32{}
	vms := map[string]bool{}
	for _, ref := range refs {
		vms[ref.VM] = true
	}
	v.rep.Snapshots = len(refs)
	addUser := func(us []int32, u int32) []int32 {
		if n := len(us); n > 0 && us[n-1] == u {
			return us
		}
		return append(us, u)
	}
	for i, s := range snaps {
		if s == nil {
			continue
		}
		for _, d := range s.Disks {
			sd := SnapshotDisk{VM: s.VM, Snapshot: s.ID, Disk: d.Name}
			u := int32(len(v.disks))
			v.disks = append(v.disks, sd)
			v.snapTimes[SnapshotDisk{VM: s.VM, Snapshot: s.ID}] = refs[i].Time
			v.rep.Disks++
			dkey := "disk:" + refs[i].Key + "/" + d.Name
			dobj := fmt.Sprintf("vm %s snapshot %s disk %s", s.VM, s.ID, d.Name)
			if d.PageSize <= 0 || d.Size < 0 || int64(len(d.Pages)) != (d.Size+max(d.PageSize, 1)-1)/max(d.PageSize, 1) {
				v.problem(dkey, ProblemDisk, dobj, fmt.Sprintf("%d pages do not cover %d bytes at %d bytes per page", len(d.Pages), d.Size, d.PageSize)).disks[u] = struct{}{}
				continue
			}
			var alloc int64
			for p, ref := range d.Pages {
				alloc += ref.Allocated
				if ref.Map.IsZero() {
					if ref.Allocated != 0 {
						v.problem(dkey, ProblemDisk, dobj, fmt.Sprintf("page %d is a hole but records %d allocated bytes", p, ref.Allocated)).disks[u] = struct{}{}
					}
				} else {
					m := maps[ref.Map]
					if m == nil {
						m = &mapUse{minLen: math.MaxInt64, alloc: ref.Allocated}
						maps[ref.Map] = m
					}
					m.users = addUser(m.users, u)
					m.minLen = min(m.minLen, pageLen(d, p))
					if m.alloc != ref.Allocated {
						v.problem(dkey, ProblemDisk, dobj, fmt.Sprintf("page %d records %d allocated bytes, another use of its map page %d", p, ref.Allocated, m.alloc)).disks[u] = struct{}{}
					}
				}
				if !ref.Digests.IsZero() {
					digests[ref.Digests] = addUser(digests[ref.Digests], u)
				}
			}
			if alloc != d.Allocated {
				v.problem(dkey, ProblemDisk, dobj, fmt.Sprintf("records %d allocated bytes, its pages %d", d.Allocated, alloc)).disks[u] = struct{}{}
			}
		}
	}
	v.rep.VMs = len(vms)
	v.rep.MapPages = len(maps)
	v.rep.DigestPages = len(digests)
	snaps = nil

	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for id, m := range maps {
		g.Go(func() error {
			plain, err := v.loadPage(gctx, id, "map", m.users)
			if err != nil || plain == nil {
				return err
			}
			exts, derr := DecodeMapPage(plain, 0, m.minLen)
			v.mu.Lock()
			defer v.mu.Unlock()
			if derr != nil {
				v.problem("page:"+id.String(), ProblemPage, "map page "+id.String(), derr.Error())
				v.affect("page:"+id.String(), m.users)
				return nil
			}
			v.rep.Extents += int64(len(exts))
			var sum int64
			seen := map[chunk.ID]bool{}
			for _, e := range exts {
				sum += e.Len
				locs := v.fi.locations(e.Blob)
				if len(locs) == 0 {
					key := "missing:" + e.Blob.String()
					msg := "referenced by a disk map but not in the index"
					if v.unreadableIndexFiles > 0 {
						msg += " (it may be listed in an index file that cannot be read)"
					}
					v.problem(key, ProblemBlob, "data blob "+e.Blob.String(), msg)
					v.affect(key, m.users)
					continue
				}
				if e.BlobOff+e.Len > int64(locs[0].blob().RawLength) {
					v.problem("page:"+id.String(), ProblemPage, "map page "+id.String(),
						fmt.Sprintf("extent at %d reads past the end of blob %s", e.Off, e.Blob.Short()))
					v.affect("page:"+id.String(), m.users)
				}
				if seen[e.Blob] {
					continue
				}
				seen[e.Blob] = true
				v.attribute(locs, m.users)
			}
			if sum != m.alloc {
				v.problem("page:"+id.String(), ProblemPage, "map page "+id.String(),
					fmt.Sprintf("maps %d bytes, the manifest says %d", sum, m.alloc))
				v.affect("page:"+id.String(), m.users)
			}
			return nil
		})
	}
	for id, users := range digests {
		g.Go(func() error {
			plain, err := v.loadPage(gctx, id, "digest", users)
			if err != nil || plain == nil {
				return err
			}
			if _, derr := DecodeDigests(plain); derr != nil {
				v.mu.Lock()
				v.problem("page:"+id.String(), ProblemPage, "digest page "+id.String(), derr.Error())
				v.affect("page:"+id.String(), users)
				v.mu.Unlock()
			}
			return nil
		})
	}
	return g.Wait()
}

// attribute adds users to the problems of the damaged copies of a blob: a
// restore may pick any copy. Called with v.mu held.
func (v *verifier) attribute(locs []blobPos, users []int32) {
	for _, l := range locs {
		if k, ok := v.packBad[l.pack.ID]; ok {
			v.affect(k, users)
		}
		if k, ok := v.blobBad[blobCopy{l.blob().ID, l.pack.ID}]; ok {
			v.affect(k, users)
		}
	}
}

// loadPage reads a map or digest page from the first copy not known to be
// damaged. A nil result with a nil error means the page is unreadable and
// the problem has been recorded.
func (v *verifier) loadPage(ctx context.Context, id chunk.ID, what string, users []int32) ([]byte, error) {
	v.mu.Lock()
	locs := v.fi.locations(id)
	pkey := "page:" + id.String()
	obj := what + " page " + id.String()
	if len(locs) == 0 {
		key := "missing:" + id.String()
		v.problem(key, ProblemBlob, obj, "referenced by a manifest but not in the index")
		v.affect(key, users)
		v.mu.Unlock()
		return nil, nil
	}
	v.attribute(locs, users)
	v.mu.Unlock()
	for _, l := range locs {
		v.mu.Lock()
		_, pb := v.packBad[l.pack.ID]
		_, bb := v.blobBad[blobCopy{id, l.pack.ID}]
		v.mu.Unlock()
		if pb || bb {
			continue
		}
		plain, err := v.r.readBlobAt(ctx, l)
		if err == nil {
			return plain, nil
		}
		if !errors.Is(err, ErrDamaged) && !errors.Is(err, targets.ErrNotFound) && !errors.Is(err, targets.ErrRange) {
			return nil, err
		}
		v.mu.Lock()
		bkey := "blob:" + id.String() + "@" + l.pack.ID.String()
		v.problem(bkey, ProblemBlob, fmt.Sprintf("meta blob %s in pack %s", id, l.pack.ID), err.Error())
		v.blobBad[blobCopy{id, l.pack.ID}] = bkey
		v.affect(bkey, users)
		v.mu.Unlock()
	}
	v.mu.Lock()
	v.problem(pkey, ProblemPage, obj, "no readable copy")
	v.affect(pkey, users)
	v.mu.Unlock()
	return nil, nil
}

// finish turns the accumulated problems into the report.
func (v *verifier) finish() {
	rep := v.rep
	damaged := map[SnapshotDisk]*DamagedSnapshot{}
	mark := func(a SnapshotDisk) {
		k := SnapshotDisk{VM: a.VM, Snapshot: a.Snapshot}
		d := damaged[k]
		if d == nil {
			d = &DamagedSnapshot{VM: a.VM, Snapshot: a.Snapshot, Time: v.snapTimes[k]}
			damaged[k] = d
		}
		if a.Disk == "" {
			d.Manifest = true
		} else if !containsString(d.Disks, a.Disk) {
			d.Disks = append(d.Disks, a.Disk)
		}
	}
	for _, p := range v.problems {
		out := p.Problem
		out.Message = strings.Join(p.msgs, "; ")
		if p.snapRef != nil {
			out.Affects = append(out.Affects, *p.snapRef)
		}
		for u := range p.disks {
			out.Affects = append(out.Affects, v.disks[u])
		}
		sort.Slice(out.Affects, func(i, j int) bool {
			a, b := out.Affects[i], out.Affects[j]
			if a.VM != b.VM {
				return a.VM < b.VM
			}
			ta, tb := v.snapTimes[SnapshotDisk{VM: a.VM, Snapshot: a.Snapshot}], v.snapTimes[SnapshotDisk{VM: b.VM, Snapshot: b.Snapshot}]
			if !ta.Equal(tb) {
				return ta.Before(tb)
			}
			if a.Snapshot != b.Snapshot {
				return a.Snapshot < b.Snapshot
			}
			return a.Disk < b.Disk
		})
		for _, a := range out.Affects {
			mark(a)
		}
		rep.Problems = append(rep.Problems, out)
	}
	order := map[string]int{ProblemSnapshot: 0, ProblemIndex: 1, ProblemPack: 2, ProblemPage: 3, ProblemBlob: 4, ProblemDisk: 5}
	sort.Slice(rep.Problems, func(i, j int) bool {
		a, b := rep.Problems[i], rep.Problems[j]
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		return a.Object < b.Object
	})
	for _, d := range damaged {
		sort.Strings(d.Disks)
		rep.Damaged = append(rep.Damaged, *d)
	}
	sort.Slice(rep.Damaged, func(i, j int) bool {
		a, b := rep.Damaged[i], rep.Damaged[j]
		if a.VM != b.VM {
			return a.VM < b.VM
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.Snapshot < b.Snapshot
	})
	sort.SliceStable(v.notes, func(i, j int) bool { return v.notes[i].Object < v.notes[j].Object })
	rep.Notes = v.notes
}

// ---------------------------------------------------------------------
// The subset cursor lives on the machine that runs verify, not in the
// repository: several machines may verify one repository independently.

// VerifyCursorPath is where the subset cursor of a repository is kept: the
// user's cache directory, one file per repository id.
func VerifyCursorPath(repoID string) (string, error) {
	if !NameRE.MatchString(repoID) {
		return "", fmt.Errorf("repository id %q cannot name a file", repoID)
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory for the verify cursor: %w", err)
	}
	return filepath.Join(dir, "drctl", "verify-cursor-"+repoID), nil
}

// LoadVerifyCursor returns the saved cursor of a repository ("" if none).
func LoadVerifyCursor(repoID string) (string, error) {
	path, err := VerifyCursorPath(repoID)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read verify cursor: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SaveVerifyCursor stores the cursor for the next subset run.
func SaveVerifyCursor(repoID, cursor string) error {
	path, err := VerifyCursorPath(repoID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save verify cursor: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cursor+"\n"), 0o600); err != nil {
		return fmt.Errorf("save verify cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save verify cursor: %w", err)
	}
	return nil
}

// plural renders a count with its noun.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
