package repo_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
)

// refs makes snapshot refs of one VM at the given times; the id encodes
// the time so that test expectations read naturally.
func refsAt(vm string, times ...string) []repo.SnapshotRef {
	var out []repo.SnapshotRef
	for _, s := range times {
		t, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			panic(err)
		}
		out = append(out, repo.SnapshotRef{VM: vm, ID: vm + "@" + s, Time: t})
	}
	return out
}

func ids(refs []repo.SnapshotRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.ID)
	}
	return out
}

func TestApplyPolicy(t *testing.T) {
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	days := refsAt("vm",
		"2025-01-01 10:00", "2025-01-01 22:00",
		"2025-01-02 08:00",
		"2025-01-05 01:00", "2025-01-05 01:30", "2025-01-05 23:59",
		"2025-01-06 00:00", "2025-01-06 00:10",
	)
	for _, c := range []struct {
		name  string
		snaps []repo.SnapshotRef
		p     repo.KeepPolicy
		keep  []string
	}{
		{"last 3", days, repo.KeepPolicy{Last: 3},
			[]string{"vm@2025-01-05 23:59", "vm@2025-01-06 00:00", "vm@2025-01-06 00:10"}},
		{"last more than there are", days, repo.KeepPolicy{Last: 100}, ids(days)},
		{"daily 3: newest of each of the 3 latest days with snapshots", days, repo.KeepPolicy{Daily: 3},
			[]string{"vm@2025-01-02 08:00", "vm@2025-01-05 23:59", "vm@2025-01-06 00:10"}},
		{"daily unlimited", days, repo.KeepPolicy{Daily: -1},
			[]string{"vm@2025-01-01 22:00", "vm@2025-01-02 08:00", "vm@2025-01-05 23:59", "vm@2025-01-06 00:10"}},
		{"hourly 2", days, repo.KeepPolicy{Hourly: 2},
			[]string{"vm@2025-01-05 23:59", "vm@2025-01-06 00:10"}},
		{"hourly 4 merges the two 01h snapshots", days, repo.KeepPolicy{Hourly: 4},
			[]string{"vm@2025-01-05 01:30", "vm@2025-01-05 23:59", "vm@2025-01-06 00:10", "vm@2025-01-02 08:00"}},
		{"last 1 + daily 2 overlap", days, repo.KeepPolicy{Last: 1, Daily: 2},
			[]string{"vm@2025-01-05 23:59", "vm@2025-01-06 00:10"}},
		{"within 24h of the newest, not of now", days, repo.KeepPolicy{Within: 24 * time.Hour},
			[]string{"vm@2025-01-05 01:00", "vm@2025-01-05 01:30", "vm@2025-01-05 23:59", "vm@2025-01-06 00:00", "vm@2025-01-06 00:10"}},
		{"empty policy keeps only the newest", days, repo.KeepPolicy{},
			[]string{"vm@2025-01-06 00:10"}},
		{"weekly uses ISO weeks (Sunday and Monday differ)",
			refsAt("vm", "2025-01-04 10:00", "2025-01-05 10:00", "2025-01-06 10:00", "2025-01-07 10:00"),
			repo.KeepPolicy{Weekly: 5},
			[]string{"vm@2025-01-05 10:00", "vm@2025-01-07 10:00"}},
		{"ISO week 1 spans the new year",
			refsAt("vm", "2024-12-28 10:00", "2024-12-30 10:00", "2025-01-02 10:00"),
			repo.KeepPolicy{Weekly: 5},
			[]string{"vm@2024-12-28 10:00", "vm@2025-01-02 10:00"}},
		{"monthly and yearly",
			refsAt("vm", "2023-06-01 00:00", "2023-12-31 00:00", "2024-03-01 00:00", "2024-03-20 00:00", "2024-11-01 00:00", "2025-01-01 00:00"),
			repo.KeepPolicy{Monthly: 2, Yearly: 3},
			[]string{"vm@2023-12-31 00:00", "vm@2024-11-01 00:00", "vm@2025-01-01 00:00"}},
		{"gaps do not use up slots",
			refsAt("vm", "2024-01-01 00:00", "2024-06-01 00:00", "2025-01-01 00:00"),
			repo.KeepPolicy{Daily: 3},
			[]string{"vm@2024-01-01 00:00", "vm@2024-06-01 00:00", "vm@2025-01-01 00:00"}},
		{"two VMs are separate",
			append(refsAt("a", "2025-01-01 00:00", "2025-01-02 00:00"), refsAt("b", "2025-01-01 12:00", "2025-01-03 00:00", "2025-01-04 00:00")...),
			repo.KeepPolicy{Last: 1},
			[]string{"a@2025-01-02 00:00", "b@2025-01-04 00:00"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Input order must not matter.
			in := slices.Clone(c.snaps)
			slices.Reverse(in)
			keep, remove, reasons := repo.ApplyPolicy(in, c.p, now)
			want := slices.Clone(c.keep)
			slices.Sort(want)
			got := ids(keep)
			gotSorted := slices.Clone(got)
			slices.Sort(gotSorted)
			if !slices.Equal(gotSorted, want) {
				t.Fatalf("keep %v\nwant %v", got, want)
			}
			if len(keep)+len(remove) != len(c.snaps) {
				t.Fatalf("%d kept + %d removed of %d", len(keep), len(remove), len(c.snaps))
			}
			for _, k := range keep {
				if len(reasons[k.ID]) == 0 {
					t.Fatalf("no reason for keeping %s", k.ID)
				}
			}
			for _, r := range remove {
				if slices.Contains(got, r.ID) || reasons[r.ID] != nil {
					t.Fatalf("%s both kept and removed", r.ID)
				}
			}
			// Output order: by VM, oldest first.
			for _, list := range [][]repo.SnapshotRef{keep, remove} {
				for i := 1; i < len(list); i++ {
					a, b := list[i-1], list[i]
					if a.VM > b.VM || (a.VM == b.VM && a.Time.After(b.Time)) {
						t.Fatalf("not ordered: %v", ids(list))
					}
				}
			}
		})
	}
}

func TestApplyPolicyReasonsAndZone(t *testing.T) {
	snaps := refsAt("vm", "2025-01-05 23:30", "2025-01-06 00:30")
	keep, _, reasons := repo.ApplyPolicy(snaps, repo.KeepPolicy{Daily: 2, Last: 1}, time.Date(2025, 1, 7, 0, 0, 0, 0, time.UTC))
	if len(keep) != 2 {
		t.Fatalf("keep %v", ids(keep))
	}
	if r := reasons["vm@2025-01-06 00:30"]; !slices.Equal(r, []string{"last snapshot", "daily snapshot (2025-01-06)"}) {
		t.Fatalf("reasons %q", r)
	}
	// Days begin where now says: two hours east of UTC both snapshots
	// fall on 6 January.
	east := time.FixedZone("UTC+2", 2*3600)
	keep, _, _ = repo.ApplyPolicy(snaps, repo.KeepPolicy{Daily: 2}, time.Date(2025, 1, 7, 0, 0, 0, 0, east))
	if len(keep) != 1 || keep[0].ID != "vm@2025-01-06 00:30" {
		t.Fatalf("keep in UTC+2: %v", ids(keep))
	}
	// The newest is always kept, and says so.
	keep, _, reasons = repo.ApplyPolicy(snaps, repo.KeepPolicy{}, time.Now())
	if len(keep) != 1 || !slices.Equal(reasons[keep[0].ID], []string{repo.ReasonNewest}) {
		t.Fatalf("empty policy: %v %v", ids(keep), reasons)
	}
	if k, r, _ := repo.ApplyPolicy(nil, repo.KeepPolicy{Last: 1}, time.Now()); k != nil || r != nil {
		t.Fatal("no snapshots in, some out")
	}
}

func TestKeepPolicyEmptyAndString(t *testing.T) {
	if !(repo.KeepPolicy{}).Empty() || (repo.KeepPolicy{Monthly: 1}).Empty() || (repo.KeepPolicy{Within: time.Hour}).Empty() || (repo.KeepPolicy{Daily: -1}).Empty() {
		t.Fatal("Empty")
	}
	if s := (repo.KeepPolicy{Last: 3, Daily: -1, Within: time.Hour}).String(); s != "keep last 3, daily all, within 1h0m0s" {
		t.Fatalf("String = %q", s)
	}
}

func TestForget(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	r := initRepo(t, mt)
	base := time.Now().UTC().Add(-10 * time.Hour)
	var saved []string
	for i := 0; i < 5; i++ {
		for _, vm := range []string{"web", "db"} {
			s := &repo.Snapshot{ID: repo.NewSnapshotID(), VM: vm, Time: base.Add(time.Duration(i) * time.Hour)}
			if err := r.SaveSnapshot(ctx, s); err != nil {
				t.Fatal(err)
			}
			saved = append(saved, s.ID)
		}
	}
	if _, err := r.Forget(ctx, "", repo.KeepPolicy{}, false); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty policy: %v", err)
	}

	res, err := r.Forget(ctx, "web", repo.KeepPolicy{Last: 2}, true)
	if err != nil || !res.DryRun || len(res.Keep) != 2 || len(res.Remove) != 3 || res.Removed != 0 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if all, _ := r.ListSnapshots(ctx, ""); len(all) != 10 {
		t.Fatalf("dry run removed snapshots: %d left", len(all))
	}

	res, err = r.Forget(ctx, "web", repo.KeepPolicy{Last: 2}, false)
	if err != nil || res.Removed != 3 {
		t.Fatalf("forget: %+v, %v", res, err)
	}
	web, _ := r.ListSnapshots(ctx, "web")
	db, _ := r.ListSnapshots(ctx, "db")
	if len(web) != 2 || len(db) != 5 {
		t.Fatalf("after forget: web %d, db %d", len(web), len(db))
	}
	if web[1].ID != saved[8] || web[0].ID != saved[6] {
		t.Fatalf("kept the wrong web snapshots: %v", ids(web))
	}

	// All VMs at once; Within measured from each VM's newest.
	res, err = r.Forget(ctx, "", repo.KeepPolicy{Within: 90 * time.Minute}, false)
	if err != nil || res.Removed != 3 || len(res.Keep) != 4 {
		t.Fatalf("forget all: removed %d kept %v, %v", res.Removed, ids(res.Keep), err)
	}
	if b := fmt.Sprint(res.Reasons[saved[9]]); !strings.Contains(b, "within 1h30m0s") {
		t.Fatalf("reasons %v", res.Reasons)
	}
}
