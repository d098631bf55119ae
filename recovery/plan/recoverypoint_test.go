package plan

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSelect(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	// Deliberately not in time order: Select must not rely on it.
	snaps := []SnapshotInfo{
		{ID: "3f2a000000000002", Time: t0.Add(2 * time.Hour)},
		{ID: "aa00000000000000", Time: t0},
		{ID: "3f2a000000000001", Time: t0.Add(time.Hour)},
		{ID: "bb00000000000000", Time: t0.Add(2 * time.Hour)}, // same time as 3f2a…02; sorts after it
	}
	tests := []struct {
		name    string
		rp      RecoveryPoint
		snaps   []SnapshotInfo
		want    string   // ID picked
		errIs   error    // with wantErr
		wantErr []string // substrings of the error
	}{
		{name: "latest", rp: RecoveryPoint{Latest: true}, snaps: snaps, want: "bb00000000000000"},
		{name: "zero value is latest", rp: RecoveryPoint{}, snaps: snaps, want: "bb00000000000000"},
		{name: "at exact time", rp: RecoveryPoint{At: t0.Add(time.Hour)}, snaps: snaps, want: "3f2a000000000001"},
		{name: "at between snapshots", rp: RecoveryPoint{At: t0.Add(90 * time.Minute)}, snaps: snaps, want: "3f2a000000000001"},
		{name: "at in another zone", rp: RecoveryPoint{At: t0.Add(30 * time.Minute).In(time.FixedZone("CET", 3600))}, snaps: snaps, want: "aa00000000000000"},
		{name: "at after all", rp: RecoveryPoint{At: t0.Add(24 * time.Hour)}, snaps: snaps, want: "bb00000000000000"},
		{name: "at before all", rp: RecoveryPoint{At: t0.Add(-time.Minute)}, snaps: snaps, errIs: ErrNoSnapshot,
			wantErr: []string{"no snapshot at or before 2026-11-25T07:59:00Z: the oldest snapshot, aa00000000000000, is from 2026-11-25T08:00:00Z: pick a later time, or recover latest"}},
		{name: "exact id", rp: RecoveryPoint{ID: "3f2a000000000002"}, snaps: snaps, want: "3f2a000000000002"},
		{name: "unique prefix", rp: RecoveryPoint{ID: "aa00"}, snaps: snaps, want: "aa00000000000000"},
		{name: "upper-case prefix", rp: RecoveryPoint{ID: "BB00"}, snaps: snaps, want: "bb00000000000000"},
		{name: "ambiguous prefix", rp: RecoveryPoint{ID: "3f2a"}, snaps: snaps, errIs: ErrAmbiguous,
			wantErr: []string{`ambiguous snapshot id prefix "3f2a": it matches 3f2a000000000001 (2026-11-25T09:00:00Z), 3f2a000000000002 (2026-11-25T10:00:00Z): give more digits`}},
		{name: "unknown id", rp: RecoveryPoint{ID: "cccc"}, snaps: snaps, errIs: ErrNoSnapshot,
			wantErr: []string{`no snapshot has id "cccc" (of 4 snapshots, the newest is bb00000000000000 from 2026-11-25T10:00:00Z): check the id with drctl snapshots`}},
		{name: "empty list latest", rp: RecoveryPoint{Latest: true}, errIs: ErrNoSnapshot,
			wantErr: []string{"no snapshot to recover from: the repository holds none for this VM"}},
		{name: "empty list id", rp: RecoveryPoint{ID: "abcd"}, errIs: ErrNoSnapshot, wantErr: []string{"no snapshot to recover from"}},
		{name: "empty list at", rp: RecoveryPoint{At: t0}, errIs: ErrNoSnapshot, wantErr: []string{"no snapshot to recover from"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.rp.Select(tt.snaps)
			if tt.wantErr == nil {
				if err != nil || got.ID != tt.want {
					t.Fatalf("Select = %+v, %v; want %s", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Select = %+v, want an error", got)
			}
			if !errors.Is(err, tt.errIs) {
				t.Errorf("error %v is not %v", err, tt.errIs)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
		})
	}
}

func TestSelectAmbiguousListIsCapped(t *testing.T) {
	var snaps []SnapshotInfo
	for i := range 15 {
		snaps = append(snaps, SnapshotInfo{ID: "abcd00000000000" + string(rune('a'+i)), Time: time.Unix(int64(i), 0)})
	}
	_, err := RecoveryPoint{ID: "abcd"}.Select(snaps)
	if err == nil || !strings.Contains(err.Error(), " and 5 more: give more digits") {
		t.Errorf("err = %v, want 10 candidates and a count of the rest", err)
	}
}

func TestRecoveryPointString(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		rp   RecoveryPoint
		want string
	}{
		{RecoveryPoint{Latest: true}, "latest"},
		{RecoveryPoint{}, "latest"},
		{RecoveryPoint{ID: "3f2a"}, "id 3f2a"},
		{RecoveryPoint{At: at}, "at 2026-11-25T10:00:00Z"},
	} {
		if got := tt.rp.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.rp, got, tt.want)
		}
	}
}

func TestParseRecoveryPoint(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want RecoveryPoint
	}{
		{"", RecoveryPoint{Latest: true}},
		{"recovery_point: latest", RecoveryPoint{Latest: true}},
		{"recovery_point: 3F2A9C", RecoveryPoint{ID: "3f2a9c"}},
		{"recovery_point: 1234", RecoveryPoint{ID: "1234"}}, // YAML reads it as a number
		{"recovery_point: {at: 2026-11-25T11:00:00+01:00}", RecoveryPoint{At: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}},
		{"recovery_point: {at: \"2026-11-25T10:00:00.5Z\"}", RecoveryPoint{At: time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC)}},
	} {
		p, err := Parse([]byte("groups: [{vms: [{vm: a, "+tt.yaml+"}]}]\n"), "p.yaml")
		if err != nil {
			t.Errorf("%s: %v", tt.yaml, err)
			continue
		}
		got := p.Groups[0].VMs[0].RecoveryPoint
		if got.Latest != tt.want.Latest || got.ID != tt.want.ID || !got.At.Equal(tt.want.At) {
			t.Errorf("%s: got %+v, want %+v", tt.yaml, got, tt.want)
		}
	}
}
