package replicate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/testvm"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

// TestCrashConsistentSnapshots boots a guest that writes an increasing
// sequence to two disks (record N to disk A, then to disk B, each durable
// before the next) and snapshots it ten times while it writes. Every
// restored pair must hold a prefix of the sequence with B at most one
// record behind A, and the sequence must advance between snapshots. At the
// end, with the guest paused, an incremental snapshot and a full read of
// the same instant must restore identically.
func TestCrashConsistentSnapshots(t *testing.T) {
	ctx := t.Context()
	vm, err := testvm.Start(ctx, t, testvm.Options{
		Mode:   testvm.ModeSeq,
		Disks:  []testvm.Disk{{Size: 32 << 20}, {Size: 32 << 20}},
		Blocks: 2048, // an 8 MiB ring, so the sequence wraps during the test
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitSeq(ctx, 100); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	opts := replicate.Options{VM: "seq", QEMU: &replicate.QEMU{QMPSocket: vm.QMPSocket(), WorkDir: t.TempDir()}}

	var snaps []*repo.Snapshot
	for i := range 10 {
		s, err := replicate.Run(ctx, r, opts)
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		want := "full"
		if i > 0 {
			want = "bitmap"
		}
		for _, d := range s.Disks {
			if d.ChangeSource != want {
				t.Fatalf("snapshot %d disk %s: change source %s (%s), want %s", i, d.Name, d.ChangeSource, d.Note, want)
			}
		}
		snaps = append(snaps, s)
		time.Sleep(300 * time.Millisecond)
	}

	prevA := int64(-1)
	for i, s := range snaps {
		dir := t.TempDir()
		if err := recovery.RestoreSnapshot(ctx, r, s, dir, recovery.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		a, b, err := testvm.CheckSeqFiles(filepath.Join(dir, "vdisk0"), filepath.Join(dir, "vdisk1"))
		if err != nil {
			t.Fatalf("snapshot %d (%s): %v", i, s.ID, err)
		}
		t.Logf("snapshot %d: read %d bytes, last record A=%d B=%d", i, s.Stats.BytesRead, a, b)
		if a < prevA {
			t.Fatalf("snapshot %d went back in time: A=%d after %d", i, a, prevA)
		}
		prevA = a
	}
	if prevA < 100 {
		t.Fatalf("the guest wrote only up to record %d", prevA)
	}

	// Same instant, two ways: pause the guest, take an incremental, then
	// drop the bitmaps so the next snapshot reads everything.
	if _, err := vm.QMP(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	inc, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range inc.Disks {
		if _, err := vm.QMP(ctx, "block-dirty-bitmap-remove", map[string]string{"node": d.Node, "name": d.Bitmap}); err != nil {
			t.Fatalf("remove bitmap of disk %d: %v", i, err)
		}
	}
	full, err := replicate.Run(ctx, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if full.Disks[0].ChangeSource != "scan" {
		t.Fatalf("without bitmaps: change source %s", full.Disks[0].ChangeSource)
	}
	di, df := t.TempDir(), t.TempDir()
	for _, p := range []struct {
		s   *repo.Snapshot
		dir string
	}{{inc, di}, {full, df}} {
		if err := recovery.RestoreSnapshot(ctx, r, p.s, p.dir, recovery.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"vdisk0", "vdisk1"} {
		a, _ := os.ReadFile(filepath.Join(di, name))
		b, _ := os.ReadFile(filepath.Join(df, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s: the incremental and the full read of the same instant differ", name)
		}
	}
}
