package replicate_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// TestDamagedIndexFile: one damaged index file does not stop replication
// (its blobs are stored again); verify names it and prune refuses to run.
func TestDamagedIndexFile(t *testing.T) {
	ctx := t.Context()
	r, mt := newRepo(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	testimg.Write(t, img, 4<<20, 1)
	first, err := replicate.Run(ctx, r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	var key string
	mt.List(ctx, "index/", func(o targets.ObjectInfo) error { key = o.Key; return nil })
	data, _, err := mt.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if _, err := mt.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}

	// A fresh handle (another process) reads the damaged file.
	r2, err := repo.Open(ctx, mt, "pw", repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testimg.Scatter(t, img, 10, 2)
	s, err := replicate.Run(ctx, r2, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		t.Fatalf("replicate with a damaged index file: %v", err)
	}
	restoreAndCompare(t, r2, s, map[string]string{"disk.img": img})
	if d := s.Disks[0]; d.ChangeSource != "full" || !strings.Contains(d.Note, "not in the index") {
		t.Fatalf("the new snapshot does not say why it read in full: %s %q", d.ChangeSource, d.Note)
	}

	// The old snapshot, whose map only the damaged file indexed, is
	// reported; the new one is whole.
	rep, err := r2.Verify(ctx, repo.VerifyOptions{})
	if !errors.Is(err, repo.ErrDamaged) || rep.OK() || !strings.Contains(rep.Summary(), key) || strings.Contains(rep.Summary(), s.ID) {
		t.Fatalf("verify after the damage: %v\n%s", err, rep.Summary())
	}
	if _, err := r2.Prune(ctx, repo.PruneOptions{Grace: -1}); err == nil || !strings.Contains(err.Error(), "prune will not run on a damaged index") {
		t.Fatalf("prune on a damaged index: %v", err)
	}

	// repair index rebuilds the lost entries from the packs' headers.
	res, err := r2.RepairIndex(ctx, false)
	if err != nil || len(res.BadIndexFiles) != 1 || res.PacksIndexed == 0 || len(res.BadPacks) != 0 {
		t.Fatalf("repair: %+v, %v", res, err)
	}
	if rep, err := r2.Verify(ctx, repo.VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("verify after repair: %v\n%s", err, rep.Summary())
	}
	old, err := r2.FindSnapshot(ctx, "vm", first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := recovery.RestoreSnapshot(ctx, r2, old, t.TempDir(), recovery.RestoreOptions{}); err != nil {
		t.Fatalf("restore the old snapshot after repair: %v", err)
	}
	if _, err := r2.Prune(ctx, repo.PruneOptions{Grace: -1}); err != nil {
		t.Fatalf("prune after repair: %v", err)
	}
}
