package replicate_test

import (
	"path/filepath"
	"testing"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// TestPruneObjectLock: deletes refused by Object Lock retention are not
// errors; the objects stay, every snapshot stays whole, and a prune after
// the retention ended removes them.
func TestPruneObjectLock(t *testing.T) {
	for _, prefix := range []string{"data/", "index/"} {
		t.Run("locked "+prefix, func(t *testing.T) {
			ctx := t.Context()
			f := targets.NewFaulty(memtarget.New())
			r, err := repo.Init(ctx, f, "pw", repo.Options{KDF: repo.FastKDF, Tune: func(c *repo.Config) { c.PackSize = 1 << 20 }})
			if err != nil {
				t.Fatal(err)
			}
			img := filepath.Join(t.TempDir(), "disk.img")
			for i := range 3 {
				testimg.Write(t, img, 4<<20, uint64(i)) // little in common
				if _, err := replicate.Run(ctx, r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := r.Forget(ctx, "vm", repo.KeepPolicy{Last: 1}, false); err != nil {
				t.Fatal(err)
			}
			f.Add(targets.Fault{Ops: []targets.Op{targets.OpDelete}, KeyPrefix: prefix, Err: targets.ErrLocked})
			res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1})
			if err != nil || res.ObjectsLocked == 0 {
				t.Fatalf("prune with locked %s: %+v, %v", prefix, res, err)
			}
			rep, err := r.Verify(ctx, repo.VerifyOptions{ReadData: true})
			if err != nil || !rep.OK() {
				t.Fatalf("verify after a prune that met locks: %v %s", err, rep.Summary())
			}
			// The retention ends: the next prune removes what stayed.
			f.Clear()
			before := res.PacksAfter
			res, err = r.Prune(ctx, repo.PruneOptions{Grace: -1})
			if err != nil || res.ObjectsLocked != 0 || res.PacksAfter >= before {
				t.Fatalf("prune after the retention ended: %+v, %v (packs before %d)", res, err, before)
			}
			rep, err = r.Verify(ctx, repo.VerifyOptions{ReadData: true})
			if err != nil || !rep.OK() {
				t.Fatalf("verify: %v %s", err, rep.Summary())
			}
		})
	}
}
