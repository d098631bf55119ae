package replicate_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// faultyRepo makes a repository of 1 MiB packs on a target that faults
// on demand, and a 16 MiB image to replicate into it: the setup of the
// tests of runs that stop or stall half way.
func faultyRepo(t *testing.T) (*repo.Repository, *targets.Faulty, *memtarget.Target, string) {
	t.Helper()
	mt := memtarget.New()
	f := targets.NewFaulty(mt)
	r, err := repo.Init(t.Context(), f, "pw", repo.Options{KDF: repo.FastKDF, Tune: func(c *repo.Config) { c.PackSize = 1 << 20 }})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	testimg.Write(t, img, 16<<20, 9)
	return r, f, mt, img
}

// TestCancelledRunResumes: a replication stopped mid-upload (SIGTERM to
// the agent cancels its context) commits nothing, indexes the packs it
// uploaded, and the next run stores only the rest.
func TestCancelledRunResumes(t *testing.T) {
	r, f, mt, img := faultyRepo(t)
	// Slow uploads, so the run is still uploading when it is stopped.
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpPut}, KeyPrefix: "data/", Delay: 100 * time.Millisecond})
	packs := func() int {
		n := 0
		mt.List(t.Context(), "data/", func(targets.ObjectInfo) error { n++; return nil })
		return n
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := replicate.Run(ctx, r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
		done <- err
	}()
	for packs() < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v", err)
	}
	uploaded := packs()
	if refs, _ := r.ListSnapshots(t.Context(), "vm"); len(refs) != 0 {
		t.Fatal("a stopped run committed a snapshot")
	}
	f.Clear()
	s, err := replicate.Run(t.Context(), r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	var idx int
	mt.List(t.Context(), "index/", func(o targets.ObjectInfo) error {
		if strings.HasPrefix(o.Key, "index/") {
			idx++
		}
		return nil
	})
	total := packs()
	t.Logf("stopped after %d packs; the rerun added %d packs, stored %d new bytes", uploaded, total-uploaded, s.Stats.BytesNew)
	if total-uploaded > 17-uploaded+1 || s.Stats.BytesNew > int64(16-uploaded+2)<<20 {
		t.Fatalf("the rerun did not reuse the %d packs of the stopped run: %d more packs, %d new bytes", uploaded, total-uploaded, s.Stats.BytesNew)
	}
	restoreAndCompare(t, r, s, map[string]string{"disk.img": img})
}
