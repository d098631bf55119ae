package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// Kinds of condemned packs.
const (
	condemnDelete    = "delete"    // indexed, nothing in it is used
	condemnRepack    = "repack"    // indexed; its used blobs were copied into new packs
	condemnUnindexed = "unindexed" // no index file listed it
)

// condemnedRecord is the mark of a prune (condemned/<name>, sealed JSON):
// packs it will delete once no writer that could still rely on them runs.
// Writers read every record and do not deduplicate against the blobs
// listed, so that the sweep may delete them.
type condemnedRecord struct {
	Version int             `json:"version"`
	Prune   string          `json:"prune"` // writer id of the prune
	Created time.Time       `json:"created"`
	Packs   []condemnedPack `json:"packs"`
}

type condemnedPack struct {
	ID   chunk.ID `json:"id"`
	Kind string   `json:"kind"`
	Size int64    `json:"size"`
	// Blobs are the ids (32 bytes each, concatenated: half the size of
	// hex) of the blobs that go with the pack: all of them for a delete,
	// the ones not copied for a repack, none for an unindexed pack (its
	// blobs are in no index, so no writer can deduplicate against them).
	Blobs []byte `json:"blobs,omitempty"`
}

func (p *condemnedPack) blobIDs() []chunk.ID {
	out := make([]chunk.ID, 0, len(p.Blobs)/len(chunk.ID{}))
	for b := p.Blobs; len(b) >= len(chunk.ID{}); b = b[len(chunk.ID{}):] {
		out = append(out, chunk.ID(b[:len(chunk.ID{})]))
	}
	return out
}

func appendBlobID(b []byte, id chunk.ID) []byte { return append(b, id[:]...) }

// newRecordName names a condemned record like an index file: prune's
// writer id, time, random suffix.
func (r *Repository) newRecordName() string {
	return fmt.Sprintf("%s-%s-%s", r.opts.WriterID, time.Now().UTC().Format("20060102T150405Z"), randomHex(4))
}

// listCondemned returns the names (without prefix) of the condemned
// records, sorted.
func (r *Repository) listCondemned(ctx context.Context) ([]string, error) {
	var out []string
	err := r.target.List(ctx, condemnedPrefix, func(oi targets.ObjectInfo) error {
		out = append(out, strings.TrimPrefix(oi.Key, condemnedPrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list condemned records: %w", err)
	}
	slices.Sort(out)
	return out, nil
}

// errRecordDamaged marks a record that cannot be decoded.
var errRecordDamaged = errors.New("condemned record cannot be read")

// readCondemned reads one record. A missing record (swept meanwhile)
// returns targets.ErrNotFound; an undecodable one errRecordDamaged.
func (r *Repository) readCondemned(ctx context.Context, name string) (*condemnedRecord, targets.ObjectInfo, error) {
	sealed, oi, err := r.target.Get(ctx, condemnedPrefix+name)
	if err != nil {
		return nil, oi, fmt.Errorf("read condemned record %s: %w", name, err)
	}
	plain, err := r.codec.Open(sealed)
	if err != nil {
		return nil, oi, fmt.Errorf("condemned record %s: %w: %w", name, errRecordDamaged, err)
	}
	var rec condemnedRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, oi, fmt.Errorf("condemned record %s: %w: %w", name, errRecordDamaged, err)
	}
	return &rec, oi, nil
}

func (r *Repository) writeCondemned(ctx context.Context, name string, rec *condemnedRecord) error {
	plain, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode condemned record: %w", err)
	}
	if _, err := r.target.PutIfAbsent(ctx, condemnedPrefix+name, r.codec.Seal(plain)); err != nil {
		return fmt.Errorf("save condemned record %s: %w", name, err)
	}
	return nil
}

// condemnedView is what a writer must not deduplicate against: the blobs
// that condemned records list and that no index entry outside condemned
// packs holds. It goes with one generation of a handle's index.
type condemnedView struct {
	records []string          // names of the records read, sorted
	listed  []string          // names listed when the view was built, sorted
	packs   map[chunk.ID]bool // condemned packs
	mu      sync.RWMutex      // guards hidden
	hidden  map[chunk.ID]struct{}
}

// loadCondemnedView reads the named records. A record gone meanwhile was
// swept: its packs are out of the index files already. A record that
// cannot be decoded hides nothing; it is safe to ignore because prune
// never sweeps a record it cannot read either.
func (r *Repository) loadCondemnedView(ctx context.Context, names []string) (*condemnedView, error) {
	v := &condemnedView{listed: names, packs: map[chunk.ID]bool{}, hidden: map[chunk.ID]struct{}{}}
	err := r.eachRecord(ctx, names, func(name string, err error) error {
		r.log.Warn("ignoring a damaged condemned record (prune removes it)", "record", name, "err", err)
		return nil
	}, func(name string, rec *condemnedRecord) {
		v.records = append(v.records, name)
		for i := range rec.Packs {
			p := &rec.Packs[i]
			v.packs[p.ID] = true
			for _, id := range p.blobIDs() {
				v.hidden[id] = struct{}{}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// eachRecord reads the named records one at a time and passes each to fn.
// A record gone meanwhile was swept: its packs are out of the index files
// already. One that cannot be decoded goes to damaged, whose error stops
// the reading.
func (r *Repository) eachRecord(ctx context.Context, names []string, damaged func(name string, err error) error, fn func(name string, rec *condemnedRecord)) error {
	for _, name := range names {
		rec, _, err := r.readCondemned(ctx, name)
		switch {
		case errors.Is(err, targets.ErrNotFound):
			continue
		case errors.Is(err, errRecordDamaged):
			if err := damaged(name, err); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		fn(name, rec)
	}
	return nil
}

// sameRecords reports whether names is the listing the view was built
// from.
func (v *condemnedView) sameRecords(names []string) bool {
	return slices.Equal(v.listed, names)
}

// revive un-hides the blobs of packs that no record condemns: another
// copy exists, which stays.
func (v *condemnedView) revive(ps []chunk.IndexPack) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.hidden) == 0 {
		return
	}
	for _, p := range ps {
		if v.packs[p.ID] {
			continue
		}
		for _, b := range p.Blobs {
			delete(v.hidden, b.ID)
		}
	}
}

// hides reports whether a writer must store id again although the index
// has it.
func (v *condemnedView) hides(id chunk.ID) bool {
	if v == nil {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.hidden[id]
	return ok
}

// condemnsPack reports whether a condemned record names the pack.
func (v *condemnedView) condemnsPack(id chunk.ID) bool {
	if v == nil {
		return false
	}
	return v.packs[id]
}
