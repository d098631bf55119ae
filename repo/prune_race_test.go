package repo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
)

// raceSeeds are the data blobs of replication i: its own, its parent's
// (as an incremental run would), and one last used four runs ago, which
// forget with Last: 2 has just made unused: the blob that a prune is
// about to drop while the replication deduplicates against it.
func raceSeeds(i int) []uint64 {
	seeds := []uint64{uint64(1000 + i)}
	for _, back := range []int{1, 4} {
		if i-back >= 0 {
			seeds = append(seeds, uint64(1000+i-back))
		}
	}
	return seeds
}

// raceReplication is saveSnap with a pause between deduplicating and
// committing.
func raceReplication(ctx context.Context, r *repo.Repository, seeds []uint64, pause time.Duration) (*repo.Snapshot, error) {
	w, err := r.NewWriter(ctx, "race")
	if err != nil {
		return nil, err
	}
	s, err := fillSnap(ctx, r, w, "vm", seeds)
	if err != nil {
		w.Abort()
		return nil, err
	}
	time.Sleep(pause)
	if err := w.Close(ctx); err != nil {
		return nil, err
	}
	if err := w.Commit(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// TestPruneRace runs replications and forget+prune (no grace) side by
// side through two handles, as an agent and a cron prune would. After
// every commit the new snapshot must read back, after every prune every
// snapshot must, and at the end verify must find nothing missing.
func TestPruneRace(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts repo.PruneOptions
	}{
		{"exact", repo.PruneOptions{}},
		// Blob sets as Bloom filters of 8 Kibit, no duplicate detection,
		// and marks and index rewrites in batches of 64 blobs: the paths
		// a large repository takes.
		{"bounded memory", repo.PruneOptions{MemoryLimit: 1024, BlobsPerIndexFile: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) { testPruneRace(t, tc.opts) })
	}
}

func testPruneRace(t *testing.T, base repo.PruneOptions) {
	iterations := 200
	if testing.Short() {
		iterations = 40
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mt := memtarget.New()
	pruner := initRepo(t, mt)
	writer := openRepo(t, mt)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		stats   repo.PruneResult // sums
		prunes  int
		stopped = make(chan struct{})
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	wg.Add(2)
	go func() { // B: replications
		defer wg.Done()
		defer close(stopped)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range iterations {
			// Replications start at any moment relative to a prune's mark,
			// and take a while: prunes mark and sweep during them.
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			s, err := raceReplication(ctx, writer, raceSeeds(i), time.Duration(rng.IntN(1000))*time.Microsecond)
			if err != nil {
				fail(fmt.Errorf("replication %d: %w", i, err))
				return
			}
			if err := readSnap(ctx, writer, s); err != nil {
				fail(fmt.Errorf("replication %d, read right after its commit: %w", i, err))
				return
			}
		}
	}()
	go func() { // A: forget and prune
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stopped:
				return
			default:
			}
			if _, err := pruner.Forget(ctx, "vm", repo.KeepPolicy{Last: 2}, false); err != nil {
				fail(fmt.Errorf("forget %d: %w", k, err))
				return
			}
			// Every fourth prune waits for the writers, the others sweep
			// what they can.
			opts := base
			opts.Grace, opts.Wait, opts.PollInterval, opts.WaitTimeout = -1, k%4 == 3, time.Millisecond, time.Second
			res, err := pruner.Prune(ctx, opts)
			if err != nil {
				fail(fmt.Errorf("prune %d: %w", k, err))
				return
			}
			mu.Lock()
			prunes++
			stats.PacksCondemned += res.PacksCondemned
			stats.PacksDeleted += res.PacksDeleted
			stats.RepackedDeleted += res.RepackedDeleted
			stats.UnindexedDeleted += res.UnindexedDeleted
			stats.PacksRescued += res.PacksRescued
			stats.RecordsSwept += res.RecordsSwept
			stats.RecordsWaiting += res.RecordsWaiting
			mu.Unlock()
			refs, err := pruner.ListSnapshots(ctx, "vm")
			if err != nil {
				fail(err)
				return
			}
			for _, ref := range refs {
				s, err := pruner.LoadSnapshot(ctx, ref)
				if err != nil {
					fail(err)
					return
				}
				if err := readSnap(ctx, pruner, s); err != nil {
					fail(fmt.Errorf("after prune %d (%+v): %w", k, res, err))
					return
				}
			}
		}
	}()
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d replications, %d prunes: %d packs condemned, %d deleted, %d repacked packs deleted, %d unindexed deleted, %d rescued, %d records swept, %d times a record waited",
		iterations, prunes, stats.PacksCondemned, stats.PacksDeleted, stats.RepackedDeleted, stats.UnindexedDeleted, stats.PacksRescued, stats.RecordsSwept, stats.RecordsWaiting)
	if stats.PacksDeleted == 0 || stats.RecordsWaiting == 0 {
		t.Fatal("the race did not happen: nothing deleted, or no record ever waited for a writer")
	}
	// With nothing running, one prune sweeps every record.
	final := base
	final.Grace = -1
	if _, err := pruner.Prune(context.Background(), final); err != nil {
		t.Fatal(err)
	}
	if n := len(keysUnder(mt, "condemned/")) + len(keysUnder(mt, "leases/")); n != 0 {
		t.Fatalf("%d records and leases left", n)
	}
	verifyClean(t, mt)
	readAll(t, mt)
}
