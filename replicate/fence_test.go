package replicate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/replicate"
)

// fenceAfter lets the first n checks pass and then answers as the fence
// store does once the VM was failed over: a failover that lands while the
// disks are read must stop the commit.
type fenceAfter struct {
	store *fence.Store
	n     int
	calls int
}

func (f *fenceAfter) CheckCommit(ctx context.Context, vm, site string) error {
	f.calls++
	if f.calls == f.n+1 {
		if _, err := f.store.TakeOver(ctx, vm, fence.Claim{Owner: "dr", Run: "r1"}); err != nil {
			return err
		}
	}
	return f.store.CheckCommit(ctx, vm, site)
}

func TestFencedReplicationCommitsNothing(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		passes int
	}{{"fenced before reading", 0}, {"fenced while reading", 1}} {
		t.Run(c.name, func(t *testing.T) {
			r, mt := newRepo(t)
			f := &fenceAfter{store: fence.NewStore(mt), n: c.passes}
			_, err := replicate.Run(t.Context(), r, replicate.Options{VM: "web", Disks: []replicate.Disk{{Path: img}}, Fence: f, Site: "primary"})
			if !errors.Is(err, fence.ErrFenced) {
				t.Fatalf("replicate after failover: %v", err)
			}
			if f.calls != c.passes+1 {
				t.Fatalf("%d fence checks, want %d", f.calls, c.passes+1)
			}
			snaps, err := r.ListSnapshots(t.Context(), "web")
			if err != nil || len(snaps) != 0 {
				t.Fatalf("snapshots after a fenced run: %v, %v", snaps, err)
			}
		})
	}
	// The owner may commit.
	r, mt := newRepo(t)
	st := fence.NewStore(mt)
	if _, err := st.TakeOver(t.Context(), "web", fence.Claim{Owner: "dr", Run: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := replicate.Run(t.Context(), r, replicate.Options{VM: "web", Disks: []replicate.Disk{{Path: img}}, Fence: st, Site: "dr"}); err != nil {
		t.Fatalf("owner's replicate: %v", err)
	}
}
