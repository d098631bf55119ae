package repo_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
)

// twoVMs makes vm1 (disks a and b, two snapshots) and vm2 (disk c, one
// snapshot).
func twoVMs(t *testing.T, f *fixture) (vm1 []*repo.Snapshot, vm2 *repo.Snapshot) {
	t.Helper()
	f.disk("a", 3<<20+1234, 1)
	f.disk("b", 1<<20, 2)
	f.disk("c", 2<<20, 3)
	s1 := f.snap("vm1", "a", "b")
	f.change("a", 1<<20, 600<<10, 4)
	s2 := f.snap("vm1", "a", "b")
	vm2 = f.snap("vm2", "c")
	return []*repo.Snapshot{s1, s2}, vm2
}

func findProblem(rep *repo.VerifyReport, kind string) *repo.Problem {
	for i := range rep.Problems {
		if rep.Problems[i].Kind == kind {
			return &rep.Problems[i]
		}
	}
	return nil
}

func damaged(rep *repo.VerifyReport, snapID string) *repo.DamagedSnapshot {
	for i := range rep.Damaged {
		if rep.Damaged[i].Snapshot == snapID {
			return &rep.Damaged[i]
		}
	}
	return nil
}

func hasDisk(d *repo.DamagedSnapshot, disk string) bool {
	if d == nil {
		return false
	}
	for _, n := range d.Disks {
		if n == disk {
			return true
		}
	}
	return false
}

func TestVerifyHealthy(t *testing.T) {
	f := newFixture(t)
	twoVMs(t, f)

	rep, err := f.verify(repo.VerifyOptions{})
	if err != nil {
		t.Fatalf("structural verify: %v\n%s", err, rep.Summary())
	}
	packs := len(f.keys("data/"))
	if rep.Snapshots != 3 || rep.VMs != 2 || rep.Disks != 5 || rep.Packs != packs || rep.IndexFiles != len(f.keys("index/")) {
		t.Fatalf("counts: %+v (packs on target %d)", rep, packs)
	}
	if rep.MapPages == 0 || rep.DigestPages == 0 || rep.Extents == 0 || rep.Data.Mode != "none" || rep.Data.PacksChecked != 0 {
		t.Fatalf("structure: %+v", rep)
	}
	if !strings.Contains(rep.Summary(), "no damage found") {
		t.Fatalf("summary:\n%s", rep.Summary())
	}

	rep, err = f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("read-data verify: %v\n%s", err, rep.Summary())
	}
	if rep.Data.Mode != "all" || rep.Data.PacksChecked != packs || rep.Data.BlobsChecked != int64(rep.Blobs) || rep.Data.BytesChecked != f.bytesUnder("data/") {
		t.Fatalf("data check: %+v, %d blobs", rep.Data, rep.Blobs)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil || back["problems"] == nil {
		t.Fatalf("json: %s", b)
	}
}

func TestVerifyCorruptPackByte(t *testing.T) {
	f := newFixture(t)
	vm1, vm2 := twoVMs(t, f)
	loc := f.blobOf(vm1[1], "a")
	f.mt.Corrupt(repo.PackKey(loc.Pack), int(loc.Offset)+20)

	// Sizes are unchanged: the structural check cannot see a flipped bit.
	if rep, err := f.verify(repo.VerifyOptions{}); err != nil {
		t.Fatalf("structural verify: %v\n%s", err, rep.Summary())
	}
	rep, err := f.verify(repo.VerifyOptions{ReadData: true})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("read-data verify: err = %v", err)
	}
	p := findProblem(rep, repo.ProblemBlob)
	if p == nil || !strings.Contains(p.Object, loc.Pack.String()) || len(p.Affects) == 0 {
		t.Fatalf("no blob problem naming the pack: %+v", rep.Problems)
	}
	if pp := findProblem(rep, repo.ProblemPack); pp == nil || !strings.Contains(pp.Message, "hash") {
		t.Fatalf("pack hash mismatch not reported: %+v", rep.Problems)
	}
	if d := damaged(rep, vm1[1].ID); !hasDisk(d, "a") || hasDisk(d, "b") {
		t.Fatalf("damage of vm1's latest snapshot, disk a: %+v", rep.Damaged)
	}
	if damaged(rep, vm2.ID) != nil {
		t.Fatalf("vm2 reported damaged: %+v", rep.Damaged)
	}
	sum := rep.Summary()
	if !strings.Contains(sum, "DAMAGE") || !strings.Contains(sum, vm1[1].ID) || !strings.Contains(sum, "disk a") {
		t.Fatalf("summary:\n%s", sum)
	}
}

func TestVerifyMissingPack(t *testing.T) {
	f := newFixture(t)
	vm1, vm2 := twoVMs(t, f)
	loc := f.blobOf(vm2, "c")
	f.mt.Delete(f.ctx, repo.PackKey(loc.Pack))

	rep, err := f.verify(repo.VerifyOptions{})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("structural verify: err = %v", err)
	}
	p := findProblem(rep, repo.ProblemPack)
	if p == nil || p.Object != repo.PackKey(loc.Pack) || !strings.Contains(p.Message, "missing") {
		t.Fatalf("missing pack not named: %+v", rep.Problems)
	}
	if len(p.Affects) != 1 || p.Affects[0] != (repo.SnapshotDisk{VM: "vm2", Snapshot: vm2.ID, Disk: "c"}) {
		t.Fatalf("affects %+v", p.Affects)
	}
	if len(rep.Damaged) != 1 || !hasDisk(damaged(rep, vm2.ID), "c") || damaged(rep, vm1[0].ID) != nil {
		t.Fatalf("damaged %+v", rep.Damaged)
	}
	// The data check skips what is known missing and says the same.
	rep2, err := f.verify(repo.VerifyOptions{ReadData: true})
	if !errors.Is(err, repo.ErrDamaged) || len(rep2.Damaged) != 1 || rep2.Data.PacksChecked != rep2.Packs-1 {
		t.Fatalf("read-data: %v, %+v", err, rep2.Data)
	}
}

func TestVerifyTruncatedPack(t *testing.T) {
	f := newFixture(t)
	vm1, vm2 := twoVMs(t, f)
	loc := f.blobOf(vm1[0], "b")
	key := repo.PackKey(loc.Pack)
	data, _, _ := f.mt.Get(f.ctx, key)
	f.mt.Put(f.ctx, key, data[:len(data)/2])

	rep, err := f.verify(repo.VerifyOptions{})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("structural verify: err = %v", err)
	}
	p := findProblem(rep, repo.ProblemPack)
	if p == nil || p.Object != key || !strings.Contains(p.Message, "truncated") {
		t.Fatalf("truncated pack not named: %+v", rep.Problems)
	}
	if !hasDisk(damaged(rep, vm1[0].ID), "b") || !hasDisk(damaged(rep, vm1[1].ID), "b") || damaged(rep, vm2.ID) != nil {
		t.Fatalf("damaged %+v", rep.Damaged)
	}
}

func TestVerifyCorruptManifest(t *testing.T) {
	f := newFixture(t)
	vm1, vm2 := twoVMs(t, f)
	refs, _ := f.r.ListSnapshots(f.ctx, "vm2")
	f.mt.Corrupt(refs[0].Key, 50)

	rep, err := f.verify(repo.VerifyOptions{})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("err = %v", err)
	}
	p := findProblem(rep, repo.ProblemSnapshot)
	if p == nil || p.Object != refs[0].Key || len(p.Affects) != 1 || p.Affects[0].Snapshot != vm2.ID {
		t.Fatalf("manifest not named: %+v", rep.Problems)
	}
	d := damaged(rep, vm2.ID)
	if d == nil || !d.Manifest || len(rep.Damaged) != 1 || rep.Snapshots != 3 {
		t.Fatalf("damaged %+v, %d snapshots read", rep.Damaged, rep.Snapshots)
	}
	_ = vm1
}

func TestVerifyCorruptIndexFile(t *testing.T) {
	f := newFixture(t)
	f.disk("a", 2<<20, 1)
	s := f.snap("vm1", "a")
	idx := f.keys("index/")
	if len(idx) != 1 {
		t.Fatalf("%d index files after one run", len(idx))
	}
	f.mt.Corrupt(idx[0], 40)

	rep, err := f.verify(repo.VerifyOptions{})
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("err = %v", err)
	}
	p := findProblem(rep, repo.ProblemIndex)
	if p == nil || p.Object != idx[0] {
		t.Fatalf("index file not named: %+v", rep.Problems)
	}
	if d := damaged(rep, s.ID); !hasDisk(d, "a") {
		t.Fatalf("snapshot not reported: %+v", rep.Damaged)
	}
	if rep.UnindexedPacks != len(f.keys("data/")) {
		t.Fatalf("%d unindexed packs", rep.UnindexedPacks)
	}
	if !strings.Contains(rep.Summary(), idx[0]) {
		t.Fatalf("summary:\n%s", rep.Summary())
	}
}

func TestVerifyUnindexedPackIsNotDamage(t *testing.T) {
	f := newFixture(t)
	f.disk("a", 1<<20, 1)
	f.snap("vm1", "a")
	key := putStrayPack(t, f)

	rep, err := f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("err = %v\n%s", err, rep.Summary())
	}
	if rep.UnindexedPacks != 1 || len(rep.Notes) != 1 || rep.Notes[0].Object != key || !strings.Contains(rep.Notes[0].Message, "prune removes") {
		t.Fatalf("unindexed: %d, notes %+v", rep.UnindexedPacks, rep.Notes)
	}
	if !strings.Contains(rep.Summary(), "1 unindexed pack ") {
		t.Fatalf("summary:\n%s", rep.Summary())
	}
}

// putStrayPack uploads a valid pack that no index lists, as an interrupted
// run leaves behind.
func putStrayPack(t *testing.T, f *fixture) string {
	t.Helper()
	c := f.r.Codec()
	plain := []byte("a blob nobody indexed")
	p := chunk.NewPacker(0)
	p.Add(chunk.DataBlob, c.BlobID(plain), c.Encode(nil, plain, c.BlobID(plain)), len(plain))
	data, id, _ := p.Finish(c)
	if id != sha256.Sum256(data) {
		t.Fatal("pack id is not the hash of its bytes")
	}
	key := repo.PackKey(id)
	if _, err := f.mt.Put(f.ctx, key, data); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestVerifySubsetCursorCoversAll(t *testing.T) {
	mt := memtarget.New()
	spy := &spyTarget{Target: mt}
	f := newFixtureOn(t, mt, spy)
	twoVMs(t, f)
	all := map[string]bool{}
	for _, k := range f.keys("data/") {
		all[k] = true
	}
	n := len(all)
	if n < 4 {
		t.Fatalf("only %d packs: the test needs more", n)
	}

	const runs = 3
	per := int(math.Ceil(float64(n) / runs))
	seen := map[string]int{}
	cursor := ""
	complete := 0
	spy.takeGets("")
	for i := 0; i < runs; i++ {
		rep, err := f.verify(repo.VerifyOptions{Subset: repo.Subset{Fraction: 1.0 / runs}, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		got := spy.takeGets("data/")
		if len(got) != per || rep.Data.PacksChecked != per || rep.Data.Mode != "subset" || rep.Data.Cursor != cursor {
			t.Fatalf("run %d read %d packs (report %+v), want %d", i, len(got), rep.Data, per)
		}
		if rep.Data.CycleComplete {
			complete++
		}
		for _, k := range got {
			seen[k]++
		}
		cursor = rep.Data.NextCursor
	}
	for k := range all {
		if seen[k] == 0 {
			t.Fatalf("pack %s never checked in %d runs of 1/%d", k, runs, runs)
		}
	}
	if complete == 0 {
		t.Fatal("no run reported a complete cycle")
	}

	// A byte budget smaller than any pack still checks one pack.
	rep, err := f.verify(repo.VerifyOptions{Subset: repo.Subset{Bytes: 1}, Cursor: cursor})
	if err != nil || rep.Data.PacksChecked != 1 || len(spy.takeGets("data/")) != 1 {
		t.Fatalf("byte budget: %v, %+v", err, rep.Data)
	}
	// A budget covering everything reads everything.
	rep, err = f.verify(repo.VerifyOptions{Subset: repo.Subset{Bytes: 1 << 40}, Cursor: cursor})
	if err != nil || rep.Data.PacksChecked != n || !rep.Data.CycleComplete {
		t.Fatalf("large budget: %v, %+v", err, rep.Data)
	}

	// Damage in a pack is found by the run whose share holds it.
	loc := f.blobOf(f.mustLatest("vm2"), "c")
	mt.Corrupt(repo.PackKey(loc.Pack), int(loc.Offset)+5)
	found := false
	cursor = ""
	for i := 0; i < runs; i++ {
		rep, err := f.verify(repo.VerifyOptions{Subset: repo.Subset{Fraction: 1.0 / runs}, Cursor: cursor})
		if errors.Is(err, repo.ErrDamaged) && damaged(rep, f.mustLatest("vm2").ID) != nil {
			found = true
		}
		cursor = rep.Data.NextCursor
	}
	if !found {
		t.Fatal("rolling subset never found the corrupted pack")
	}
}

func (f *fixture) mustLatest(vm string) *repo.Snapshot {
	f.t.Helper()
	s, err := f.r.LatestSnapshot(f.ctx, vm)
	if err != nil || s == nil {
		f.t.Fatalf("latest of %s: %v", vm, err)
	}
	return s
}

func TestParseSubset(t *testing.T) {
	for _, c := range []struct {
		in   string
		want repo.Subset
		ok   bool
	}{
		{"1/5", repo.Subset{Fraction: 0.2}, true},
		{"20%", repo.Subset{Fraction: 0.2}, true},
		{"0.25", repo.Subset{Fraction: 0.25}, true},
		{"1", repo.Subset{Fraction: 1}, true},
		{"500M", repo.Subset{Bytes: 500 << 20}, true},
		{"2GiB", repo.Subset{Bytes: 2 << 30}, true},
		{"10 G", repo.Subset{Bytes: 10 << 30}, true},
		{"1.5k", repo.Subset{Bytes: 1536}, true},
		{"0", repo.Subset{}, false},
		{"150%", repo.Subset{}, false},
		{"3/2", repo.Subset{}, false},
		{"1/0", repo.Subset{}, false},
		{"12X", repo.Subset{}, false},
		{"", repo.Subset{}, false},
		{"-1", repo.Subset{}, false},
	} {
		got, err := repo.ParseSubset(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseSubset(%q) = %+v, %v; want %+v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestVerifyCursorFile(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	if c, err := repo.LoadVerifyCursor("abc123"); err != nil || c != "" {
		t.Fatalf("no cursor yet: %q, %v", c, err)
	}
	if err := repo.SaveVerifyCursor("abc123", "00ff"); err != nil {
		t.Fatal(err)
	}
	if c, err := repo.LoadVerifyCursor("abc123"); err != nil || c != "00ff" {
		t.Fatalf("cursor %q, %v", c, err)
	}
	if _, err := repo.VerifyCursorPath("../x"); err == nil {
		t.Fatal("a repository id with a slash named a file")
	}
}
