package repo_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
)

// noGrace lets prune touch packs of any age (tests only).
var noGrace = repo.PruneOptions{Grace: -1}

// history makes vm1 with four snapshots whose changes leave, once the
// first three are forgotten, one pack partly used (repack), and packs
// not used at all (delete); and vm2 with two snapshots left alone.
func history(t *testing.T, f *fixture) (vm1, vm2 []*repo.Snapshot) {
	t.Helper()
	f.disk("a", 4<<20, 1)
	f.disk("c", 2<<20, 2)
	vm1 = append(vm1, f.snap("vm1", "a"))
	vm2 = append(vm2, f.snap("vm2", "c"))
	f.change("a", 0, 2<<20, 3) // half of the first data pack becomes garbage once s1 goes
	vm1 = append(vm1, f.snap("vm1", "a"))
	f.change("a", 0, 2<<20, 4) // all of s2's data becomes garbage once s2 goes
	vm1 = append(vm1, f.snap("vm1", "a"))
	f.change("c", 1<<20, 8192, 5)
	vm2 = append(vm2, f.snap("vm2", "c"))
	f.change("a", 3<<20, 4096, 6)
	vm1 = append(vm1, f.snap("vm1", "a"))
	return vm1, vm2
}

func TestPruneAfterForget(t *testing.T) {
	f := newFixture(t)
	vm1, _ := history(t, f)
	if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil {
		t.Fatalf("before: %v\n%s", err, rep.Summary())
	}
	before := f.bytesUnder("data/")
	indexBefore := len(f.keys("index/"))

	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	// A dry run changes nothing but says what would happen.
	keys := f.mt.Keys()
	dry, err := f.r.Prune(f.ctx, repo.PruneOptions{Grace: -1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, f.mt.Keys()) {
		t.Fatal("dry run changed the repository")
	}
	if !dry.DryRun || dry.PacksDeleted == 0 || dry.PacksRepacked == 0 || dry.BytesFreed <= 0 {
		t.Fatalf("dry run: %+v", dry)
	}

	res, err := f.r.Prune(f.ctx, noGrace)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prune: %+v", res)
	after := f.bytesUnder("data/")
	if res.PacksDeleted != dry.PacksDeleted || res.PacksRepacked != dry.PacksRepacked || res.BlobsRepacked != dry.BlobsRepacked {
		t.Fatalf("prune did other than the dry run said: %+v vs %+v", res, dry)
	}
	if res.PacksDeleted == 0 || res.PacksRepacked == 0 || res.PacksWritten == 0 || res.Snapshots != 3 {
		t.Fatalf("result %+v", res)
	}
	if after >= before || res.BytesFreed != before-after || res.BytesAfter != after || res.PacksAfter != len(f.keys("data/")) {
		t.Fatalf("bytes %d → %d, result %+v", before, after, res)
	}
	if res.IndexFilesBefore != indexBefore || res.IndexFilesAfter != len(f.keys("index/")) || res.IndexFilesAfter != 1 {
		t.Fatalf("index files %d → %d, result %+v", indexBefore, len(f.keys("index/")), res)
	}
	rep, err := f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("after prune: %v\n%s", err, rep.Summary())
	}
	if rep.UnindexedPacks != 0 || rep.DuplicateBlobs != 0 {
		t.Fatalf("after prune: %+v", rep)
	}
	if n := f.restoreAll(); n != 3 {
		t.Fatalf("%d snapshots left", n)
	}
	// The handle that pruned still works: its cached index was dropped.
	f.restoreEqual(f.r, vm1[3], f.want[vm1[3].ID])

	// A second prune finds nothing to do.
	res, err = f.r.Prune(f.ctx, noGrace)
	if err != nil || res.PacksDeleted+res.PacksRepacked+res.UnindexedDeleted != 0 || res.BytesFreed != 0 {
		t.Fatalf("second prune: %+v, %v", res, err)
	}
	if after2 := f.bytesUnder("data/"); after2 != after {
		t.Fatalf("second prune changed data: %d → %d", after, after2)
	}

	// Incrementals continue from the pruned repository.
	f.change("a", 100, 5000, 7)
	s := f.snap("vm1", "a")
	if s.Parent != vm1[3].ID {
		t.Fatalf("parent %s", s.Parent)
	}
	f.restoreAll()
}

func TestPruneGrace(t *testing.T) {
	f := newFixture(t)
	history(t, f)
	stray := putStrayPack(t, f)
	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	keys := f.mt.Keys()

	// Everything was written just now: the default grace keeps it all.
	res, err := f.r.Prune(f.ctx, repo.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.UnindexedKeptFresh != 1 || res.PacksKeptFresh == 0 || res.PacksDeleted+res.PacksRepacked+res.UnindexedDeleted != 0 {
		t.Fatalf("within grace: %+v", res)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "data/") && !slices.Contains(f.mt.Keys(), k) {
			t.Fatalf("pack %s deleted within the grace period", k)
		}
	}
	if !slices.Contains(f.mt.Keys(), stray) {
		t.Fatal("fresh unindexed pack deleted")
	}

	res, err = f.r.Prune(f.ctx, noGrace)
	if err != nil {
		t.Fatal(err)
	}
	if res.UnindexedDeleted != 1 || slices.Contains(f.mt.Keys(), stray) {
		t.Fatalf("unindexed pack kept without grace: %+v", res)
	}
	if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil {
		t.Fatalf("%v\n%s", err, rep.Summary())
	}
	f.restoreAll()
}

func TestPruneRefusesDamage(t *testing.T) {
	f := newFixture(t)
	history(t, f)
	idx := f.keys("index/")
	f.mt.Corrupt(idx[0], 30)
	keys := f.mt.Keys()
	if _, err := f.r.Prune(f.ctx, noGrace); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("prune with a damaged index: %v", err)
	}
	if !slices.Equal(keys, f.mt.Keys()) {
		t.Fatal("prune changed a damaged repository")
	}
}

// TestPruneRefusesDamagedMapPage: a snapshot whose map page cannot be
// read makes prune stop before it changes anything (it cannot know what
// that snapshot uses), with an error that names the page.
func TestPruneRefusesDamagedMapPage(t *testing.T) {
	f := newFixture(t)
	vm1, _ := history(t, f)
	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	ix, err := openRepo(t, f.mt).Index(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	page := vm1[3].Disks[0].Pages[0].Map
	loc, ok := ix.Lookup(page)
	if !ok {
		t.Fatal("map page not indexed")
	}
	f.mt.Corrupt(repo.PackKey(loc.Pack), int(loc.Offset)+int(loc.Length)/2)
	keys := f.mt.Keys()
	_, err = f.r.Prune(f.ctx, repo.PruneOptions{Grace: -1, MemoryLimit: 1})
	if !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), page.Short()) {
		t.Fatalf("prune with a damaged map page: %v", err)
	}
	if !slices.Equal(keys, f.mt.Keys()) {
		t.Fatal("prune changed a damaged repository")
	}
}

// TestPruneCrashDeletingOldIndex breaks the target so that prune cannot
// delete the old index files (as if it crashed there): the repository
// must stay complete, and the next prune must finish the job.
func TestPruneCrashDeletingOldIndex(t *testing.T) {
	mt := memtarget.New()
	spy := &spyTarget{Target: mt}
	f := newFixtureOn(t, mt, spy)
	history(t, f)
	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	oldIndex := f.keys("index/")
	packs := f.keys("data/")
	var mu sync.Mutex
	failed := 0
	spy.failDelete = func(key string) error {
		if strings.HasPrefix(key, "index/") {
			mu.Lock()
			defer mu.Unlock()
			if failed++; failed > 1 {
				return fmt.Errorf("delete %s: connection reset", key)
			}
		}
		return nil
	}
	_, err := f.r.Prune(f.ctx, noGrace)
	if err == nil || !strings.Contains(err.Error(), "no pack was deleted") {
		t.Fatalf("prune with failing deletes: %v", err)
	}
	for _, k := range packs {
		if !slices.Contains(f.mt.Keys(), k) {
			t.Fatalf("pack %s deleted although old index files remain", k)
		}
	}
	left := 0
	for _, k := range oldIndex {
		if slices.Contains(f.mt.Keys(), k) {
			left++
		}
	}
	if left == 0 || left == len(oldIndex) && len(oldIndex) > 1 {
		t.Fatalf("%d of %d old index files left: the test wants a partial delete", left, len(oldIndex))
	}
	rep, err := f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatalf("after a failed prune: %v\n%s", err, rep.Summary())
	}
	f.restoreAll()

	spy.mu.Lock()
	spy.failDelete = nil
	spy.mu.Unlock()
	res, err := f.r.Prune(f.ctx, noGrace)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksDeleted == 0 || len(f.keys("index/")) != 1 {
		t.Fatalf("second prune: %+v, %d index files", res, len(f.keys("index/")))
	}
	if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil || rep.UnindexedPacks != 0 || rep.DuplicateBlobs != 0 {
		t.Fatalf("after the second prune: %v\n%s", err, rep.Summary())
	}
	f.restoreAll()
}

// TestPruneCrashAfterNewIndex breaks the target as soon as prune writes
// its new index: nothing may have been deleted, and the repository, with
// old and new index files side by side, must be complete.
func TestPruneCrashAfterNewIndex(t *testing.T) {
	mt := memtarget.New()
	spy := &spyTarget{Target: mt}
	f := newFixtureOn(t, mt, spy)
	history(t, f)
	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	before := f.mt.Keys()
	spy.onCreate = func(key string) {
		if strings.HasPrefix(key, "index/") {
			spy.mu.Lock()
			spy.failDelete = func(string) error { return errors.New("target gone") }
			spy.mu.Unlock()
		}
	}
	if _, err := f.r.Prune(f.ctx, noGrace); err == nil {
		t.Fatal("prune succeeded on a broken target")
	}
	for _, k := range before {
		if !slices.Contains(f.mt.Keys(), k) {
			t.Fatalf("%s deleted", k)
		}
	}
	spy.failDelete, spy.onCreate = nil, nil
	if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil {
		t.Fatalf("%v\n%s", err, rep.Summary())
	}
	f.restoreAll()
}

func TestPruneDuplicates(t *testing.T) {
	f := newFixture(t)
	f.disk("a", 2<<20, 1)
	s := f.snap("vm1", "a")
	// Store every blob of the data pack a second time, as two writers
	// racing would, and index the copy.
	loc := f.blobOf(s, "a")
	ix, _ := openRepo(t, f.mt).Index(f.ctx)
	var orig chunk.IndexPack
	for _, p := range ix.Packs() {
		if p.ID == loc.Pack {
			orig = p
		}
	}
	data, _, _ := f.mt.Get(f.ctx, repo.PackKey(loc.Pack))
	p := chunk.NewPacker(len(data))
	for _, b := range slices.Backward(orig.Blobs) {
		p.Add(b.Type, b.ID, data[b.Offset:b.Offset+b.Length], int(b.RawLength))
	}
	dup, id, blobs := p.Finish(f.r.Codec())
	f.mt.Put(f.ctx, repo.PackKey(id), dup)
	f.mt.PutIfAbsent(f.ctx, "index/other-writer-1", chunk.EncodeIndexFile(f.r.Codec(), chunk.IndexFile{Packs: []chunk.IndexPack{{ID: id, Size: uint32(len(dup)), Blobs: blobs}}}))

	rep, err := f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil || rep.DuplicateBlobs != len(orig.Blobs) {
		t.Fatalf("duplicates: %v, %d\n%s", err, rep.DuplicateBlobs, rep.Summary())
	}
	packs := len(f.keys("data/"))
	res, err := f.r.Prune(f.ctx, noGrace)
	if err != nil {
		t.Fatal(err)
	}
	if res.DuplicateBlobs != len(orig.Blobs) || res.PacksDeleted != 1 || res.BytesFreed != int64(len(dup)) || len(f.keys("data/")) != packs-1 {
		t.Fatalf("prune: %+v", res)
	}
	rep, err = f.verify(repo.VerifyOptions{ReadData: true})
	if err != nil || rep.DuplicateBlobs != 0 {
		t.Fatalf("after: %v\n%s", err, rep.Summary())
	}
	f.restoreAll()
}

// TestPruneRescuesBlobsOfLateSnapshot commits, while prune runs, a
// snapshot that deduplicated against data prune planned to delete (as a
// replication that started before prune would). Prune must notice it when
// it lists the snapshots again and keep that data.
func TestPruneRescuesBlobsOfLateSnapshot(t *testing.T) {
	mt := memtarget.New()
	spy := &spyTarget{Target: mt}
	f := newFixtureOn(t, mt, spy)
	vm1, _ := history(t, f)
	if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	// The late snapshot has the content of the forgotten second one.
	late := *vm1[1]
	late.ID = repo.NewSnapshotID()
	late.Time = time.Now().UTC()
	f.want[late.ID] = f.want[vm1[1].ID]
	other := openRepo(t, mt) // another writer, straight to the target
	var once sync.Once
	spy.onCreate = func(key string) {
		if strings.HasPrefix(key, "index/") {
			once.Do(func() {
				if err := other.SaveSnapshot(f.ctx, &late); err != nil {
					t.Error(err)
				}
			})
		}
	}
	res, err := f.r.Prune(f.ctx, noGrace)
	if err != nil {
		t.Fatal(err)
	}
	if res.PacksRescued == 0 {
		t.Fatalf("nothing rescued: %+v", res)
	}
	if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil {
		t.Fatalf("%v\n%s", err, rep.Summary())
	}
	if n := f.restoreAll(); n != 4 {
		t.Fatalf("%d snapshots", n)
	}
}

// TestPruneBoundedMemory prunes the same history with the exact sets and
// with memory limits that turn them into Bloom filters, with marks and
// index rewrites in batches of a few blobs. Whatever the limit, every
// snapshot stays whole; with a filter of reasonable size prune does what
// the exact plan says; with one far too small it frees less, never more,
// and a later exact prune frees the rest.
func TestPruneBoundedMemory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  int64
		perIdx int
		same   bool // does what the exact plan says
	}{
		{"exact", 0, 0, true},
		{"exact, small index files", 0, 3, true},
		{"bloom", 512, 3, true},          // 4 Kibit for a few dozen blobs
		{"bloom too small", 1, 3, false}, // 64 bits: nearly everything looks used
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			history(t, f)
			stray := putStrayPack(t, f)
			if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
				t.Fatal(err)
			}
			plan, err := f.r.Prune(f.ctx, repo.PruneOptions{Grace: -1, DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			before := f.bytesUnder("data/")
			res, err := f.r.Prune(f.ctx, repo.PruneOptions{Grace: -1, MemoryLimit: tc.limit, BlobsPerIndexFile: tc.perIdx})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if res.BytesFreed != before-f.bytesUnder("data/") {
				t.Fatalf("freed %d, data shrank by %d", res.BytesFreed, before-f.bytesUnder("data/"))
			}
			if slices.Contains(f.keys("data/"), stray) || res.UnindexedDeleted != 1 {
				t.Fatalf("the unindexed pack stays: %+v", res)
			}
			switch {
			case tc.same && (res.PacksDeleted != plan.PacksDeleted || res.PacksRepacked != plan.PacksRepacked || res.BlobsRepacked != plan.BlobsRepacked || res.BytesUnused != plan.BytesUnused):
				t.Fatalf("did other than the exact plan: %+v vs %+v", res, plan)
			case !tc.same && (res.BytesUnused >= plan.BytesUnused || res.PacksDeleted > plan.PacksDeleted):
				t.Fatalf("freed as much as the exact plan or more: %+v vs %+v", res, plan)
			}
			if tc.perIdx > 0 {
				if n := len(f.keys("index/")); n < 2 {
					t.Fatalf("%d index files for %d blobs a file", n, tc.perIdx)
				}
			}
			if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil || rep.UnindexedPacks != 0 {
				t.Fatalf("after prune: %v\n%s", err, rep.Summary())
			}
			if n := f.restoreAll(); n != 3 {
				t.Fatalf("%d snapshots left", n)
			}
			// A prune with the exact sets removes what the filter kept.
			again, err := f.r.Prune(f.ctx, noGrace)
			if err != nil {
				t.Fatal(err)
			}
			if tc.same != (again.BytesFreed == 0) {
				t.Fatalf("the exact prune after it freed %d bytes", again.BytesFreed)
			}
			if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil || rep.UnindexedPacks != 0 {
				t.Fatalf("after the exact prune: %v\n%s", err, rep.Summary())
			}
			f.restoreAll()
		})
	}
}

// TestPruneReadsIndexOnce: an index that fits the cache is read from the
// target once per prune, not once per pass; one that does not is read in
// every pass, and the result is the same.
func TestPruneReadsIndexOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int64
		maxReads func(files int) int
	}{
		{"fits", 0, func(files int) int { return files }},
		{"does not fit", 64, func(files int) int { return 4 * files }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mt := memtarget.New()
			spy := &spyTarget{Target: mt}
			f := newFixtureOn(t, mt, spy)
			history(t, f)
			if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
				t.Fatal(err)
			}
			files := len(f.keys("index/"))
			spy.mu.Lock()
			spy.gets = nil
			spy.mu.Unlock()
			res, err := f.r.Prune(f.ctx, repo.PruneOptions{Grace: -1, MemoryLimit: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			reads := map[string]int{}
			spy.mu.Lock()
			for _, k := range spy.gets {
				if strings.HasPrefix(k, "index/") {
					reads[k]++
				}
			}
			spy.mu.Unlock()
			total := 0
			for _, n := range reads {
				total += n
			}
			// The prune's own mark files are read too, to be merged.
			t.Logf("%d index files, %d reads", files, total)
			if res.PacksDeleted == 0 || total > tc.maxReads(files)+res.PacksWritten || total < files {
				t.Fatalf("%d reads of %d index files; result %+v", total, files, res)
			}
			if rep, err := f.verify(repo.VerifyOptions{ReadData: true}); err != nil {
				t.Fatalf("%v\n%s", err, rep.Summary())
			}
			f.restoreAll()
		})
	}
}
