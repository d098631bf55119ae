package replicate_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

func newRepo(t testing.TB) (*repo.Repository, *memtarget.Target) {
	return newRepoTuned(t, nil)
}

func newRepoTuned(t testing.TB, tune func(*repo.Config)) (*repo.Repository, *memtarget.Target) {
	t.Helper()
	mt := memtarget.New()
	r, err := repo.Init(context.Background(), mt, "pw", repo.Options{KDF: repo.FastKDF, Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	return r, mt
}

func restoreAndCompare(t *testing.T, r *repo.Repository, snap *repo.Snapshot, want map[string]string) {
	t.Helper()
	dir := t.TempDir()
	if err := recovery.RestoreSnapshot(context.Background(), r, snap, dir, recovery.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, src := range want {
		a, _ := os.ReadFile(src)
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("restored disk %s differs from %s", name, src)
		}
	}
}

func TestReplicateIncrementalRestore(t *testing.T) {
	t.Run("default pages", func(t *testing.T) { testIncrementalRestore(t, nil) })
	// Pages of 1 MiB: long runs and chunks cross page boundaries, and
	// pages complete while later ones are still being stored.
	t.Run("small pages", func(t *testing.T) {
		testIncrementalRestore(t, func(c *repo.Config) { c.PageSize = 1 << 20; c.PackSize = 1 << 20 })
	})
}

func testIncrementalRestore(t *testing.T, tune func(*repo.Config)) {
	ctx := context.Background()
	r, _ := newRepoTuned(t, tune)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.img")
	b := filepath.Join(dir, "b.img")
	testimg.Write(t, a, 40<<20+1234, 1) // not a multiple of the block size
	testimg.Write(t, b, 8<<20, 2)
	opts := replicate.Options{VM: "vm1", Disks: []replicate.Disk{{Path: a}, {Path: b, Name: "data"}}}

	s1, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	restoreAndCompare(t, r, s1, map[string]string{"a.img": a, "data": b})

	// 1% scattered change: only the changed blocks are new.
	testimg.Scatter(t, a, 100, 3)
	s2, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Parent != s1.ID {
		t.Fatalf("parent = %q, want %q", s2.Parent, s1.ID)
	}
	if s2.Stats.BytesChanged > 100*4096 {
		t.Fatalf("changed bytes %d, want ≤ %d", s2.Stats.BytesChanged, 100*4096)
	}
	// New data blobs are the changed blocks; metadata is digests + maps.
	if s2.Stats.BytesNew > 100*4096+(2<<20) {
		t.Fatalf("new bytes %d too high for 100 changed blocks", s2.Stats.BytesNew)
	}
	restoreAndCompare(t, r, s2, map[string]string{"a.img": a, "data": b})

	// No change at all: nothing new but metadata-free.
	s3, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Stats.BytesChanged != 0 || s3.Stats.BlobsNew != 0 {
		t.Fatalf("unchanged disk stored %d blobs, %d changed bytes", s3.Stats.BlobsNew, s3.Stats.BytesChanged)
	}
	restoreAndCompare(t, r, s3, map[string]string{"a.img": a, "data": b})

	// Zero a range that held data, rewrite a long run, grow the disk.
	f, _ := os.OpenFile(a, os.O_RDWR, 0)
	f.WriteAt(make([]byte, 3<<20), 5<<20)
	long := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	f.WriteAt(long, 20<<20)
	f.Truncate(48 << 20)
	f.WriteAt([]byte("tail"), 48<<20-4)
	f.Close()
	s4, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	restoreAndCompare(t, r, s4, map[string]string{"a.img": a, "data": b})

	// Older snapshots still restore to what they were.
	old := filepath.Join(dir, "old")
	os.MkdirAll(old, 0o755)
	if err := recovery.RestoreSnapshot(ctx, r, s1, old, recovery.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestReplicateRefusesShrinkAndMissingDisk(t *testing.T) {
	ctx := context.Background()
	r, _ := newRepo(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.img")
	testimg.Write(t, a, 4<<20, 1)
	opts := replicate.Options{VM: "vm1", Disks: []replicate.Disk{{Path: a}}}
	if _, err := replicate.Run(ctx, r, opts); err != nil {
		t.Fatal(err)
	}
	os.Truncate(a, 2<<20)
	_, err := replicate.Run(ctx, r, opts)
	if err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Fatalf("shrunk disk: err = %v", err)
	}
	opts.AllowShrink = true
	s, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	restoreAndCompare(t, r, s, map[string]string{"a.img": a})

	opts.Disks = []replicate.Disk{{Path: filepath.Join(dir, "missing.img")}}
	if _, err := replicate.Run(ctx, r, opts); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing disk: err = %v", err)
	}
	refs, _ := r.ListSnapshots(ctx, "vm1")
	if len(refs) != 2 {
		t.Fatalf("%d snapshots after a failed run, want 2", len(refs))
	}
}
