package recovery_test

import (
	"bytes"
	"errors"
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

func setup(t *testing.T) (*repo.Repository, *memtarget.Target, *repo.Snapshot, string) {
	t.Helper()
	mt := memtarget.New()
	r, err := repo.Init(t.Context(), mt, "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "root.img")
	testimg.Write(t, img, 12<<20+777, 3)
	s, err := replicate.Run(t.Context(), r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	return r, mt, s, img
}

func TestRestoreSparseAndSpec(t *testing.T) {
	r, _, s, img := setup(t)
	dir := t.TempDir()
	if err := recovery.RestoreSnapshot(t.Context(), r, s, dir, recovery.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(filepath.Join(dir, "root.img"))
	if !bytes.Equal(got, want) {
		t.Fatal("restored disk differs")
	}
	spec, err := os.ReadFile(filepath.Join(dir, "vm.json"))
	if err != nil || !strings.Contains(string(spec), s.ID) {
		t.Fatalf("vm spec: %v %s", err, spec)
	}
	// Overwriting needs to be asked for.
	if err := recovery.RestoreSnapshot(t.Context(), r, s, dir, recovery.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("restore over an existing disk: %v", err)
	}
	if err := recovery.RestoreSnapshot(t.Context(), r, s, dir, recovery.RestoreOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if err := recovery.RestoreSnapshot(t.Context(), r, s, t.TempDir(), recovery.RestoreOptions{Format: "vmdk"}); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}

// A damaged pack makes restore fail with ErrDamaged, and no file that
// looks like a complete disk is left.
func TestRestoreRefusesDamage(t *testing.T) {
	r, mt, s, _ := setup(t)
	for _, k := range mt.Keys() {
		if strings.HasPrefix(k, "data/") {
			mt.Corrupt(k, 100)
		}
	}
	dir := t.TempDir()
	err := recovery.RestoreSnapshot(t.Context(), r, s, dir, recovery.RestoreOptions{})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("restore of damaged data: %v, want ErrDamaged", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("a failed restore left %v", entries)
	}
}
