package e2e

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// packFiles lists the pack files of a local repository.
func packFiles(t *testing.T, repo string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repo, "data", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCorruptPack: a flipped byte in a pack is found by verify --read-data,
// which names the snapshot and disk; restore refuses to write wrong data.
func TestCorruptPack(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	img := filepath.Join(e.dir, "a.img")
	makeImage(t, img, 24<<20, 4)
	e.ok("init", "-r", repo)
	snap := lastSummary(t, e.ok("replicate", "-r", repo, "--vm", "db", "--disk", img, "--json"))
	e.ok("verify", "-r", repo, "--read-data")

	packs := packFiles(t, repo)
	biggest, size := "", int64(0)
	for _, p := range packs {
		if fi, _ := os.Stat(p); fi.Size() > size {
			biggest, size = p, fi.Size()
		}
	}
	b, _ := os.ReadFile(biggest)
	b[len(b)/3] ^= 0x40
	os.WriteFile(biggest, b, 0o644)

	e.ok("verify", "-r", repo) // structure is intact
	r := e.run("verify", "-r", repo, "--read-data")
	if r.code != 3 || !strings.Contains(r.stdout+r.stderr, snap.SnapshotID[:8]) || !strings.Contains(r.stdout+r.stderr, "a.img") {
		t.Fatalf("verify --read-data on a corrupt pack: want exit 3 naming snapshot %s and disk a.img, got %s", snap.SnapshotID[:8], r)
	}
	e.fails(3, "damaged", "restore", "-r", repo, "--vm", "db", "--target", filepath.Join(e.dir, "out"))
	if _, err := os.Stat(filepath.Join(e.dir, "out", "a.img")); err == nil {
		t.Fatal("restore left a disk file after failing")
	}

	// A missing pack is structural damage.
	os.Remove(biggest)
	e.fails(3, "damage", "verify", "-r", repo)
}

// TestKilledReplicate: SIGKILL in the middle of an upload leaves no
// snapshot; the next run completes, reuses what was uploaded and verifies.
func TestKilledReplicate(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	img := filepath.Join(e.dir, "big.img")
	// Incompressible data: 20 packs, the first index file after 4.
	f, _ := os.Create(img)
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1<<20)
	for i := 0; i < 320; i++ {
		for j := 0; j < len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		f.Write(buf)
	}
	f.Close()
	e.ok("init", "-r", repo)

	cmd := exec.Command(drctlBin, "replicate", "-r", repo, "--vm", "big", "--disk", img)
	cmd.Env = e.vars
	cmd.Dir = e.dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
wait:
	for len(indexFiles(t, repo)) == 0 {
		select {
		case err := <-exited:
			t.Fatalf("replicate ended before it could be killed (%v): %s", err, stderr.String())
		case <-deadline:
			break wait
		case <-time.After(5 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := <-exited; err == nil {
		t.Fatalf("replicate finished before the kill: %s", stderr.String())
	}
	if len(indexFiles(t, repo)) == 0 {
		t.Fatal("the run was not killed mid-upload: no index file was written")
	}
	if rows := snapshots(t, e, repo); len(rows) != 0 {
		t.Fatalf("a killed run left snapshots: %+v", rows)
	}

	s := lastSummary(t, e.ok("replicate", "-r", repo, "--vm", "big", "--disk", img, "--json"))
	if s.BytesNew >= 320<<20 {
		t.Fatalf("the rerun stored %d new bytes: nothing of the killed run was reused (index files %v, packs %d)", s.BytesNew, indexFiles(t, repo), len(packFiles(t, repo)))
	}
	e.ok("verify", "-r", repo, "--read-data")
	e.restoreSame(repo, "big", img)
}

// indexFiles lists the complete index files (not the target's temporary
// files, whose names start with a dot).
func indexFiles(t *testing.T, repo string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repo, "index", "[^.]*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestForgetPrune: forget by rules, prune, and what is left still restores.
func TestForgetPrune(t *testing.T) {
	e := newEnv(t)
	repo := e.s3Repo()
	img := filepath.Join(e.dir, "a.img")
	makeImage(t, img, 16<<20, 8)
	e.ok("init", "-r", repo)
	for i := range 4 {
		scatter(t, img, 200, uint64(i))
		e.ok("replicate", "-r", repo, "--vm", "a", "--disk", img)
	}
	e.fails(2, "keep rule", "forget", "-r", repo)
	r := e.ok("forget", "-r", repo, "--keep-last", "2", "--json")
	var res struct {
		Removed int `json:"removed"`
	}
	json.Unmarshal([]byte(r.stdout), &res)
	if rows := snapshots(t, e, repo); len(rows) != 2 {
		t.Fatalf("after forget --keep-last 2: %d snapshots", len(rows))
	}
	// A prune within 1 KiB of blob sets (Bloom filters) keeps some of
	// the garbage but loses nothing; the default one frees the rest.
	e.fails(2, "max-memory", "prune", "-r", repo, "--max-memory", "lots")
	e.ok("prune", "-r", repo, "--grace", "0", "--max-memory", "1KiB")
	e.ok("verify", "-r", repo, "--read-data")
	e.ok("prune", "-r", repo, "--grace", "0")
	e.ok("verify", "-r", repo, "--read-data")
	e.restoreSame(repo, "a", img)
}

// TestKeys: a second password opens the repository; the key in use cannot
// be removed.
func TestKeys(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	e.ok("init", "-r", repo)
	e.set("DRCTL_NEW_PASSWORD=second")
	e.ok("key", "add", "-r", repo, "--label", "ops")
	var keys []struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	json.Unmarshal([]byte(e.ok("key", "list", "-r", repo, "--json").stdout), &keys)
	if len(keys) != 2 {
		t.Fatalf("keys = %+v", keys)
	}
	var cur, other string
	for _, k := range keys {
		if k.Current {
			cur = k.ID
		} else {
			other = k.ID
		}
	}
	e.fails(1, "in use", "key", "remove", "-r", repo, cur)
	e.set("DRCTL_PASSWORD=second")
	e.ok("snapshots", "-r", repo)
	e.ok("key", "remove", "-r", repo, cur)
	e.set("DRCTL_PASSWORD=correct horse")
	e.fails(12, "wrong password", "snapshots", "-r", repo)
	if other == "" {
		t.Fatal("no second key")
	}
}

// TestCorruptIndex: a damaged index file does not stop replication, verify
// names it and points at repair, and repair index makes the repository
// whole again.
func TestCorruptIndex(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	e.ok("init", "-r", repo)
	img := filepath.Join(e.dir, "disk.img")
	makeImage(t, img, 8<<20, 11)
	e.ok("replicate", "-r", repo, "--vm", "vm", "--disk", img)
	files := indexFiles(t, repo)
	if len(files) != 1 {
		t.Fatalf("index files: %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(files[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	scatter(t, img, 20, 12)
	r := e.ok("replicate", "-r", repo, "--vm", "vm", "--disk", img)
	if !strings.Contains(r.stdout, "read in full") {
		t.Fatalf("the replicate after the damage does not say it read in full:\n%s", r)
	}
	if v := e.run("verify", "-r", repo); v.code != 3 || !strings.Contains(v.stdout, "drctl repair index") {
		t.Fatalf("verify of a damaged index: %s", v)
	}
	e.ok("repair", "index", "-r", repo)
	e.ok("verify", "-r", repo, "--read-data")
	out := filepath.Join(e.dir, "out")
	rows := snapshots(t, e, repo)
	e.ok("restore", "-r", repo, "--vm", "vm", "--snapshot", rows[0].ID, "--target", out)
}
