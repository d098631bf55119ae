package agent

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// repoStats measures each repository's size and dedup ratio on a period:
// the sum of the allocated bytes of every snapshot's disks (what the
// snapshots would take stored one by one) over the bytes of all packs and
// index files.
// Manifests never change, so each is read once per agent. Between scans,
// which list every pack, commits and retention move the figures by what
// they know (the packs a run wrote, the snapshots kept or forgotten), so
// the gauges are live without a LIST per snapshot; the next scan corrects
// what they cannot see (pack headers, other writers, prune).
type repoStats struct {
	mu        sync.Mutex
	allocated map[string]map[string]int64 // repository -> snapshot id -> allocated bytes
	stored    map[string]int64            // repository -> bytes of packs
	scanned   map[string]bool             // repository -> stored was measured once
}

func (s *repoStats) snapshotsOf(repository string) map[string]int64 {
	if s.allocated == nil {
		s.allocated = map[string]map[string]int64{}
		s.stored = map[string]int64{}
		s.scanned = map[string]bool{}
	}
	known := s.allocated[repository]
	if known == nil {
		known = map[string]int64{}
		s.allocated[repository] = known
	}
	return known
}

// publishLocked sets a repository's gauges from what stats holds; it does
// nothing before the first scan, so a gauge never shows a partial sum.
func (a *Agent) publishLocked(repository string) {
	s := &a.stats
	if !s.scanned[repository] {
		return
	}
	var logical int64
	for _, n := range s.allocated[repository] {
		logical += n
	}
	stored := s.stored[repository]
	label := repoLabel(repository)
	a.metrics.repoSize.WithLabelValues(label).Set(float64(stored))
	a.metrics.repoLogical.WithLabelValues(label).Set(float64(logical))
	if stored > 0 {
		a.metrics.repoDedup.WithLabelValues(label).Set(float64(logical) / float64(stored))
	}
}

// statsCommitted counts a snapshot just committed by this agent.
func (a *Agent) statsCommitted(repository string, snap *repo.Snapshot) {
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	known := a.stats.snapshotsOf(repository)
	if _, ok := known[snap.ID]; !ok {
		known[snap.ID] = allocated(snap)
		a.stats.stored[repository] += snap.Stats.BytesStored
	}
	a.publishLocked(repository)
}

// statsForgot drops forgotten snapshots; their packs stay until prune.
func (a *Agent) statsForgot(repository string, refs []repo.SnapshotRef) {
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	known := a.stats.snapshotsOf(repository)
	for _, ref := range refs {
		delete(known, ref.ID)
	}
	a.publishLocked(repository)
}

func (a *Agent) watchRepoStats(ctx context.Context) {
	every := a.opts.StatsEvery
	if every <= 0 {
		every = 10 * time.Minute
	}
	for {
		a.mu.Lock()
		cfg := a.cfg
		a.mu.Unlock()
		seen := map[string]bool{}
		var names []string
		for _, vm := range cfg.VMs {
			if r := repoOf(cfg, vm); !seen[r] {
				seen[r] = true
				names = append(names, r)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			if err := a.scanRepo(ctx, name); err != nil && ctx.Err() == nil {
				a.log.Warn("could not measure the repository", "repository", repoLabel(name), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// scanRepo updates the size and dedup ratio of one repository.
func (a *Agent) scanRepo(ctx context.Context, name string) error {
	r, err := a.repository(ctx, name)
	if err != nil {
		return err
	}
	// Packs and index files: what a run's BytesStored counts, and nearly
	// all of what the bucket bills (manifests and leases are small).
	var stored int64
	for _, prefix := range []string{"data/", "index/"} {
		if err := r.Target().List(ctx, prefix, func(o targets.ObjectInfo) error {
			stored += o.Size
			return nil
		}); err != nil {
			return err
		}
	}
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return err
	}
	a.stats.mu.Lock()
	known := a.stats.snapshotsOf(name)
	// Ids known before the listing; one committed while the scan runs is
	// not in refs but must not be dropped as forgotten.
	before := make(map[string]bool, len(known))
	for id := range known {
		before[id] = true
	}
	var missing []repo.SnapshotRef
	for _, ref := range refs {
		if _, ok := known[ref.ID]; !ok {
			missing = append(missing, ref)
		}
	}
	a.stats.mu.Unlock()
	found := make(map[string]int64, len(missing))
	for _, ref := range missing {
		s, err := r.LoadSnapshot(ctx, ref)
		if err != nil {
			if errors.Is(err, targets.ErrNotFound) {
				continue // forgotten meanwhile
			}
			return err
		}
		found[ref.ID] = allocated(s)
	}
	live := make(map[string]bool, len(refs))
	for _, ref := range refs {
		live[ref.ID] = true
	}
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	known = a.stats.snapshotsOf(name)
	for id, n := range found {
		known[id] = n
	}
	for id := range known {
		if before[id] && !live[id] {
			delete(known, id)
		}
	}
	a.stats.stored[name] = stored
	a.stats.scanned[name] = true
	a.publishLocked(name)
	return nil
}

func allocated(s *repo.Snapshot) int64 {
	var n int64
	for _, d := range s.Disks {
		n += d.Allocated
	}
	return n
}
