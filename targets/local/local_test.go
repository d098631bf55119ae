package local_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
	"github.com/drctl/drctl/targets/targettest"
)

func TestConformance(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targets.Target {
		tg, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return tg
	})
}

func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := local.New(dir)
	if !errors.Is(err, targets.ErrNoBucket) || !strings.Contains(err.Error(), "directory "+dir+" does not exist") {
		t.Fatalf("New(missing) = %v", err)
	}
	tg, err := local.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	// A vanished base directory is reported as such, and not recreated.
	_, err = tg.Put(t.Context(), "a/b", []byte("x"))
	if !errors.Is(err, targets.ErrNoBucket) {
		t.Fatalf("Put into a removed directory: %v", err)
	}
	_, _, err = tg.Get(t.Context(), "a")
	if !errors.Is(err, targets.ErrNoBucket) {
		t.Fatalf("Get from a removed directory: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the base directory was recreated: %v", err)
	}
}

// TestHiddenFiles checks that temporary files left by a crash and the lock
// files are not listed.
func TestHiddenFiles(t *testing.T) {
	dir := t.TempDir()
	tg, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Put(t.Context(), "d/obj", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err = tg.List(t.Context(), "", func(oi targets.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil || len(keys) != 1 || keys[0] != "d/obj" {
		t.Fatalf("List = %q, %v", keys, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".locks")); err != nil {
		t.Fatalf("no lock directory: %v", err)
	}
}

// TestSameContentNewTag checks the local tag's promise: rewriting
// identical bytes still changes the tag, so a stale PutIfMatch fails.
func TestSameContentNewTag(t *testing.T) {
	tg, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	seen := map[string]bool{}
	first, _ := tg.Put(ctx, "k", []byte("same"))
	seen[first.ETag] = true
	for range 200 {
		info, err := tg.Put(ctx, "k", []byte("same"))
		if err != nil {
			t.Fatal(err)
		}
		if seen[info.ETag] {
			t.Fatalf("tag %s repeated", info.ETag)
		}
		seen[info.ETag] = true
	}
	if _, err := tg.PutIfMatch(ctx, "k", []byte("same"), first.ETag); !errors.Is(err, targets.ErrPrecondition) {
		t.Fatalf("PutIfMatch with the first tag: %v", err)
	}
}

// TestFileAsDirectory covers the keys a directory cannot hold together:
// "a" and "a/b".
func TestFileAsDirectory(t *testing.T) {
	tg, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := tg.Put(ctx, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err = tg.Put(ctx, "a/b", []byte("y"))
	if err == nil || errors.Is(err, targets.ErrNotFound) || !strings.Contains(err.Error(), "prefix of the key is an object") {
		t.Fatalf("Put(a/b) over the object a = %v", err)
	}
	if _, err := tg.Stat(ctx, "a/b"); !errors.Is(err, targets.ErrNotFound) {
		t.Fatalf("Stat(a/b) = %v", err)
	}
	if _, err := tg.Put(ctx, "c/d", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err = tg.Put(ctx, "c", []byte("y"))
	if err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Put(c) over the directory c = %v", err)
	}
	if err := tg.Delete(ctx, "c"); err != nil {
		t.Fatalf("Delete(c), a directory: %v", err)
	}
}
