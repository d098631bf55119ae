package failover

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

// TestAlignGroups: a group run that committed only some members must not
// make a failover pair members from different instants.
func TestAlignGroups(t *testing.T) {
	ctx := t.Context()
	r, err := repo.Init(ctx, memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	base := map[string]*repo.Snapshot{}
	for _, vm := range []string{"app", "db"} {
		img := filepath.Join(t.TempDir(), vm+".img")
		if err := os.WriteFile(img, []byte(vm+" data"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := replicate.Run(ctx, r, replicate.Options{VM: vm, Disks: []replicate.Disk{{Path: img}}})
		if err != nil {
			t.Fatal(err)
		}
		base[vm] = s
	}
	saveAt := func(vm string, at time.Time, gid string) *repo.Snapshot {
		s := *base[vm]
		s.ID, s.Time, s.Parent, s.Tags = repo.NewSnapshotID(), at, "", []string{"group=shop", "group-id=" + gid}
		if err := r.SaveSnapshot(ctx, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	app1, db1 := saveAt("app", t1, "g1"), saveAt("db", t1, "g1")
	saveAt("app", t2, "g2") // db's half of g2 never committed
	for _, vm := range []string{"app", "db"} {
		refs, _ := r.ListSnapshots(ctx, vm)
		for _, ref := range refs {
			if ref.ID == base[vm].ID {
				if err := r.DeleteSnapshot(ctx, ref); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	p := testPlan(t, "name: p\ngroups: [{name: g, vms: [{vm: app}, {vm: db}]}]\n")
	tgs, err := resolve(ctx, r, p, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tgs[0].snap.ID != app1.ID || tgs[1].snap.ID != db1.ID {
		t.Fatalf("picked app %s and db %s, want both of group run g1 (%s, %s)", tgs[0].snap.ID, tgs[1].snap.ID, app1.ID, db1.ID)
	}
	// An explicit point is respected as given.
	p = testPlan(t, "name: p\ngroups: [{name: g, vms: [{vm: app, recovery_point: {at: \""+t2.Format(time.RFC3339)+"\"}}, {vm: db}]}]\n")
	tgs, err = resolve(ctx, r, p, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !tgs[0].snap.Time.Equal(t2) {
		t.Fatalf("explicit point replaced: %v", tgs[0].snap.Time)
	}
}
