package plan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RecoveryPoint says which snapshot of a VM to recover. At most one of
// ID and At is set; the zero RecoveryPoint means the latest snapshot,
// like Latest: true.
type RecoveryPoint struct {
	Latest bool
	ID     string    // snapshot id or unique prefix, lower-case hex
	At     time.Time // newest snapshot at or before this time
}

// Errors of RecoveryPoint.Select, for errors.Is.
var (
	ErrNoSnapshot = errors.New("no snapshot")
	ErrAmbiguous  = errors.New("ambiguous snapshot id prefix")
)

// SnapshotInfo is what Select needs to know of a snapshot.
type SnapshotInfo struct {
	ID   string
	Time time.Time
}

// String returns "latest", "id 3f2a" or "at 2026-11-25T10:00:00Z".
func (r RecoveryPoint) String() string {
	switch {
	case r.ID != "":
		return "id " + r.ID
	case !r.At.IsZero():
		return "at " + r.At.Format(time.RFC3339)
	default:
		return "latest"
	}
}

// maxCandidates caps how many snapshots an ambiguous-prefix error lists.
const maxCandidates = 10

// Select picks the snapshot r names from snaps, which may be in any order.
// Snapshots with equal times are ordered by id, as the repository lists
// them. It does no I/O; the caller adds the VM name to the error.
func (r RecoveryPoint) Select(snaps []SnapshotInfo) (SnapshotInfo, error) {
	if len(snaps) == 0 {
		return SnapshotInfo{}, fmt.Errorf("%w to recover from: the repository holds none for this VM (check the VM name and that replication has run; drctl snapshots lists them)", ErrNoSnapshot)
	}
	sorted := slices.Clone(snaps)
	slices.SortStableFunc(sorted, func(a, b SnapshotInfo) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	oldest, newest := sorted[0], sorted[len(sorted)-1]
	switch {
	case r.ID != "":
		return selectID(sorted, r.ID)
	case !r.At.IsZero():
		for i := len(sorted) - 1; i >= 0; i-- {
			if !sorted[i].Time.After(r.At) {
				return sorted[i], nil
			}
		}
		return SnapshotInfo{}, fmt.Errorf("%w at or before %s: the oldest snapshot, %s, is from %s: pick a later time, or recover latest",
			ErrNoSnapshot, utc(r.At), oldest.ID, utc(oldest.Time))
	default:
		return newest, nil
	}
}

func selectID(sorted []SnapshotInfo, id string) (SnapshotInfo, error) {
	want := strings.ToLower(id)
	var match []SnapshotInfo
	for _, s := range sorted {
		got := strings.ToLower(s.ID)
		if got == want {
			return s, nil
		}
		if strings.HasPrefix(got, want) {
			match = append(match, s)
		}
	}
	switch len(match) {
	case 0:
		newest := sorted[len(sorted)-1]
		return SnapshotInfo{}, fmt.Errorf("%w has id %q (of %d snapshots, the newest is %s from %s): check the id with drctl snapshots",
			ErrNoSnapshot, id, len(sorted), newest.ID, utc(newest.Time))
	case 1:
		return match[0], nil
	}
	list := make([]string, 0, min(len(match), maxCandidates))
	for _, s := range match[:min(len(match), maxCandidates)] {
		list = append(list, s.ID+" ("+utc(s.Time)+")")
	}
	more := ""
	if len(match) > maxCandidates {
		more = fmt.Sprintf(" and %d more", len(match)-maxCandidates)
	}
	return SnapshotInfo{}, fmt.Errorf("%w %q: it matches %s%s: give more digits", ErrAmbiguous, id, strings.Join(list, ", "), more)
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339) }
