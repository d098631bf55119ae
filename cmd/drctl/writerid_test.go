package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestWriterIDRace: drctl processes starting at once on a fresh machine
// agree on one writer id, and a damaged id file is replaced.
func TestWriterIDRace(t *testing.T) {
	dir := t.TempDir()
	env := func(k string) (string, bool) {
		if k == "DRCTL_STATE_DIR" {
			return dir, true
		}
		return "", false
	}
	const n = 32
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = newApp(strings.NewReader(""), io.Discard, io.Discard, env).writerID()
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("writer %d got id %q, writer 0 %q", i, id, ids[0])
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "writer-id"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := newApp(strings.NewReader(""), io.Discard, io.Discard, env).writerID()
	if id == "x" || id != newApp(strings.NewReader(""), io.Discard, io.Discard, env).writerID() {
		t.Fatalf("damaged id file: got %q, then a different one", id)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".writer-id-*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}
