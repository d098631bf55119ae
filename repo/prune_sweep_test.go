package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// blockedRepo makes vm1 with two snapshots, forgets the first (its blobs
// 1 and 2 become unused) and returns the handle.
func blockedRepo(t *testing.T, tg targets.Target) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	r := initRepo(t, tg)
	for _, seeds := range [][]uint64{{1, 2}, {3}} {
		if _, err := saveSnap(ctx, r, "vm1", seeds); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Forget(ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
		t.Fatal(err)
	}
	return r
}

func packsOf(t *testing.T, tg targets.Target) []string {
	t.Helper()
	var out []string
	if err := tg.List(context.Background(), "data/", func(oi targets.ObjectInfo) error {
		out = append(out, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSweepWaitsForLeases: a writer that started before the mark blocks
// the sweep until its lease ends or expires; one that started after the
// mark does not.
func TestSweepWaitsForLeases(t *testing.T) {
	for _, tc := range []struct {
		name string
		// unblock ends the lease of the writer that started before the
		// mark, and returns the options of the prune that must sweep.
		unblock     func(t *testing.T, ct *clockTarget, w *repo.Writer, cancel context.CancelFunc) repo.PruneOptions
		wantExpired int
		wantLeases  int // left afterwards
	}{
		{"released", func(t *testing.T, _ *clockTarget, w *repo.Writer, _ context.CancelFunc) repo.PruneOptions {
			if err := w.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			return noGrace
		}, 0, 1},
		{"expired", func(t *testing.T, ct *clockTarget, _ *repo.Writer, cancel context.CancelFunc) repo.PruneOptions {
			cancel() // the writer dies: nothing renews its lease
			time.Sleep(10 * time.Millisecond)
			// The writer that started after the mark has not renewed
			// since the clock jumped either: its lease expires too, and
			// it will learn so at its next renewal.
			ct.advance(repo.DefaultLeaseTTL + time.Minute)
			return noGrace
		}, 2, 0},
		{"waited for", func(t *testing.T, _ *clockTarget, w *repo.Writer, _ context.CancelFunc) repo.PruneOptions {
			go func() {
				time.Sleep(50 * time.Millisecond)
				w.Abort()
			}()
			return repo.PruneOptions{Grace: -1, Wait: true, PollInterval: 5 * time.Millisecond}
		}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mt := memtarget.New()
			ct := newClockTarget(mt)
			r := blockedRepo(t, ct)
			before := packsOf(t, mt)

			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			w0, err := r.NewWriter(wctx, "started before the mark")
			if err != nil {
				t.Fatal(err)
			}
			defer w0.Abort()
			res, err := r.Prune(ctx, noGrace)
			if err != nil {
				t.Fatal(err)
			}
			if res.PacksCondemned == 0 || res.RecordsWaiting != 1 || res.PacksWaiting != res.PacksCondemned ||
				res.PacksDeleted+res.RepackedDeleted+res.UnindexedDeleted != 0 ||
				len(res.LeasesBlocking) != 1 || res.LeasesBlocking[0].ID != w0.LeaseID() {
				t.Fatalf("prune with a writer that started before: %+v", res)
			}
			if !slices.Equal(before, packsOf(t, mt)) {
				t.Fatal("a pack was deleted while a lease blocks the sweep")
			}
			if n := len(keysUnder(mt, "condemned/")); n != 1 {
				t.Fatalf("%d condemned records", n)
			}
			// A writer that starts now names the record: it does not block.
			w1, err := r.NewWriter(ctx, "started after the mark")
			if err != nil {
				t.Fatal(err)
			}
			defer w1.Abort()

			opts := tc.unblock(t, ct, w0, cancel)
			res, err = r.Prune(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.RecordsSwept != 1 || res.RecordsWaiting != 0 || res.PacksDeleted == 0 || len(res.LeasesBlocking) != 0 ||
				res.LeasesExpired != tc.wantExpired {
				t.Fatalf("sweep: %+v", res)
			}
			if n := len(keysUnder(mt, "condemned/")); n != 0 {
				t.Fatalf("%d condemned records after the sweep", n)
			}
			if len(packsOf(t, mt)) >= len(before) {
				t.Fatal("nothing deleted")
			}
			if n := len(leaseObjects(t, mt)); n != tc.wantLeases {
				t.Fatalf("%d leases, want %d", n, tc.wantLeases)
			}
			verifyClean(t, mt)
			readAll(t, mt)
		})
	}
}

func TestPruneWaitTimesOut(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	r := blockedRepo(t, mt)
	w0, err := r.NewWriter(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Abort()
	start := time.Now()
	res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1, Wait: true, WaitTimeout: 60 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 60*time.Millisecond || res.RecordsWaiting != 1 || res.PacksWaiting == 0 || res.PacksDeleted != 0 {
		t.Fatalf("after %v: %+v", took, res)
	}
}

// TestCondemnedNotDeduplicated: a writer that starts after the mark
// stores condemned blobs again instead of deduplicating against them, so
// that the sweep can delete their packs.
func TestCondemnedNotDeduplicated(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	r := blockedRepo(t, mt)
	w0, err := r.NewWriter(ctx, "blocks the sweep")
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Abort()
	if !w0.Has(blobID(r, 1)) {
		t.Fatal("before the mark, an unused blob is still there to deduplicate against")
	}
	res, err := r.Prune(ctx, noGrace)
	if err != nil || res.RecordsWaiting != 1 {
		t.Fatalf("mark: %+v, %v", res, err)
	}

	w1, err := r.NewWriter(ctx, "after the mark")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		seed    uint64
		wantNew bool
	}{
		{1, true},  // condemned: stored again
		{3, false}, // in use: deduplicated
		{1, false}, // stored again already by this writer
	} {
		if has := w1.Has(blobID(r, tc.seed)); has == tc.wantNew {
			t.Fatalf("blob %d: Has = %v", tc.seed, has)
		}
		if _, isNew, err := w1.Save(ctx, chunk.DataBlob, blobData(tc.seed)); err != nil || isNew != tc.wantNew {
			t.Fatalf("blob %d: new = %v, %v; want %v", tc.seed, isNew, err, tc.wantNew)
		}
	}
	s, err := fillSnap(ctx, r, w1, "vm1", []uint64{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Once a copy outside condemned packs is indexed, it serves others.
	w2, err := r.NewWriter(ctx, "sees the new copy")
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Has(blobID(r, 1)) || w2.Has(blobID(r, 2)) {
		t.Fatalf("third writer: has 1 = %v, has 2 = %v; want true, false", w2.Has(blobID(r, 1)), w2.Has(blobID(r, 2)))
	}
	w2.Abort()
	if err := w1.Commit(ctx, s); err != nil {
		t.Fatal(err)
	}
	w0.Abort()
	res, err = r.Prune(ctx, noGrace)
	if err != nil || res.RecordsSwept != 1 || res.PacksDeleted == 0 || res.PacksRescued != 0 {
		t.Fatalf("sweep: %+v, %v", res, err)
	}
	verifyClean(t, mt)
	if n := readAll(t, mt); n != 2 {
		t.Fatalf("%d snapshots", n)
	}
}

// TestSweepRescues: a writer that started before the mark deduplicated
// against a blob the mark condemns and commits after it; the sweep must
// keep that blob's pack, whether it runs in a later prune or in the same
// one, waiting.
func TestSweepRescues(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			ctx := context.Background()
			mt := memtarget.New()
			r := blockedRepo(t, mt)
			w0, err := r.NewWriter(ctx, "started before the mark")
			if err != nil {
				t.Fatal(err)
			}
			s, err := fillSnap(ctx, r, w0, "vm1", []uint64{1, 3}) // blob 1 deduplicated
			if err != nil {
				t.Fatal(err)
			}
			if st := w0.Stats(); st.BlobsNew != 1 { // only the map page
				t.Fatalf("writer stored %d blobs, want only its map page", st.BlobsNew)
			}
			commit := func() {
				if err := w0.Close(ctx); err != nil {
					t.Error(err)
				}
				if err := w0.Commit(ctx, s); err != nil {
					t.Error(err)
				}
			}
			var res repo.PruneResult
			if wait {
				go func() {
					time.Sleep(50 * time.Millisecond)
					commit()
				}()
				res, err = r.Prune(ctx, repo.PruneOptions{Grace: -1, Wait: true, PollInterval: 5 * time.Millisecond})
			} else {
				if res, err = r.Prune(ctx, noGrace); err != nil || res.RecordsWaiting != 1 {
					t.Fatalf("mark: %+v, %v", res, err)
				}
				commit()
				res, err = r.Prune(ctx, noGrace)
			}
			if err != nil || res.RecordsSwept != 1 || res.PacksRescued == 0 {
				t.Fatalf("sweep: %+v, %v", res, err)
			}
			verifyClean(t, mt)
			if n := readAll(t, mt); n != 2 {
				t.Fatalf("%d snapshots", n)
			}
			// Blob 2 went with nothing else; the rescued pack goes once
			// nothing uses blob 1.
			if _, err := r.Forget(ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Prune(ctx, noGrace); err != nil {
				t.Fatal(err)
			}
			rep := verifyClean(t, mt)
			if rep.UnindexedPacks != 0 || len(keysUnder(mt, "condemned/")) != 0 {
				t.Fatalf("after the last prune: %+v", rep)
			}
		})
	}
}

// TestPruneExcludesPrune: a live prune lease keeps a second prune out;
// an expired one does not.
func TestPruneExcludesPrune(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	ct := newClockTarget(mt)
	r := blockedRepo(t, ct)
	other, _ := json.Marshal(map[string]any{"version": 1, "writer": "elsewhere", "host": "h2", "pid": 7, "purpose": "prune", "started": time.Now().UTC(), "ttl_seconds": 900})
	if _, err := ct.PutIfAbsent(ctx, "leases/elsewhere-1", other); err != nil {
		t.Fatal(err)
	}
	keys := mt.Keys()
	if _, err := r.Prune(ctx, noGrace); !errors.Is(err, repo.ErrPruneRunning) || !strings.Contains(err.Error(), "h2") {
		t.Fatalf("prune next to another: %v", err)
	}
	if !slices.Equal(keys, mt.Keys()) {
		t.Fatal("a refused prune changed the repository")
	}
	ct.advance(time.Hour)
	res, err := r.Prune(ctx, noGrace)
	if err != nil || res.LeasesExpired != 1 || res.PacksDeleted == 0 {
		t.Fatalf("prune after the other's lease expired: %+v, %v", res, err)
	}
	if n := len(leaseObjects(t, mt)); n != 0 {
		t.Fatalf("%d leases left", n)
	}
}

// TestPruneCrashBetweenSteps fails one step of a prune: every snapshot
// must stay complete, and the next prune must finish the job.
func TestPruneCrashBetweenSteps(t *testing.T) {
	del, put, create := []targets.Op{targets.OpDelete}, []targets.Op{targets.OpPut}, []targets.Op{targets.OpPutIfAbsent}
	for _, tc := range []struct {
		name   string
		faults []targets.Fault // the first must fire
		// leaseLeft: the prune could not release its lease, so the next
		// one must wait for it to expire.
		leaseLeft bool
	}{
		{name: "repack upload", faults: []targets.Fault{{Ops: put, KeyPrefix: "data/"}}},
		{name: "index of the repacked packs", faults: []targets.Fault{{Ops: create, KeyPrefix: "index/"}}},
		{name: "mark", faults: []targets.Fault{{Ops: create, KeyPrefix: "condemned/"}}},
		{name: "mark landed, answer lost", faults: []targets.Fault{{Ops: create, KeyPrefix: "condemned/", Landed: true, Times: 1}}},
		{name: "new index", faults: []targets.Fault{{Ops: create, KeyPrefix: "index/", AfterCalls: 1}}},
		{name: "old index delete", faults: []targets.Fault{{Ops: del, KeyPrefix: "index/", AfterCalls: 2}}},
		{name: "pack delete", faults: []targets.Fault{{Ops: del, KeyPrefix: "data/", AfterCalls: 1}}},
		{name: "record delete", faults: []targets.Fault{{Ops: del, KeyPrefix: "condemned/"}}},
		{name: "pack delete, lease left", faults: []targets.Fault{{Ops: del, KeyPrefix: "data/", AfterCalls: 2}, {Ops: del, KeyPrefix: "leases/"}}, leaseLeft: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mt := memtarget.New()
			ct := newClockTarget(mt)
			faulty := targets.NewFaulty(ct)
			f := newFixtureOn(t, mt, faulty)
			history(t, f)
			if _, err := f.r.Forget(f.ctx, "vm1", repo.KeepPolicy{Last: 1}, false); err != nil {
				t.Fatal(err)
			}
			var first *targets.Rule
			for i, fault := range tc.faults {
				if rule := faulty.Add(fault); i == 0 {
					first = rule
				}
			}
			if _, err := f.r.Prune(ctx, noGrace); err == nil {
				t.Fatal("prune succeeded on a broken target")
			}
			if faulty.Fired(first) == 0 {
				t.Fatal("the fault never fired")
			}
			faulty.Clear()
			verifyClean(t, faulty)
			if n := f.restoreAll(); n != 3 {
				t.Fatalf("%d snapshots", n)
			}
			if tc.leaseLeft {
				if _, err := f.r.Prune(ctx, noGrace); !errors.Is(err, repo.ErrPruneRunning) {
					t.Fatalf("prune next to a crashed one's lease: %v", err)
				}
				ct.advance(time.Hour)
			}
			res, err := f.r.Prune(ctx, noGrace)
			if err != nil {
				t.Fatal(err)
			}
			rep := verifyClean(t, faulty)
			if rep.UnindexedPacks != 0 || rep.DuplicateBlobs != 0 || len(keysUnder(mt, "condemned/")) != 0 ||
				len(keysUnder(mt, "index/")) != 1 || len(keysUnder(mt, "leases/")) != 0 {
				t.Fatalf("after the next prune (%+v): keys %v\n%s", res, mt.Keys(), rep.Summary())
			}
			f.restoreAll()
		})
	}
}
