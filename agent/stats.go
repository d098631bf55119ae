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
// snapshots would take stored one by one) over the bytes of all packs.
// Manifests never change, so each is read once per agent.
type repoStats struct {
	mu        sync.Mutex
	allocated map[string]map[string]int64 // repository -> snapshot key -> allocated bytes
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
	r, err := a.repos.get(ctx, name)
	if err != nil {
		return err
	}
	var stored int64
	if err := r.Target().List(ctx, "data/", func(o targets.ObjectInfo) error {
		stored += o.Size
		return nil
	}); err != nil {
		return err
	}
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return err
	}
	a.stats.mu.Lock()
	if a.stats.allocated == nil {
		a.stats.allocated = map[string]map[string]int64{}
	}
	known := a.stats.allocated[name]
	if known == nil {
		known = map[string]int64{}
		a.stats.allocated[name] = known
	}
	a.stats.mu.Unlock()
	var logical int64
	live := map[string]bool{}
	for _, ref := range refs {
		live[ref.Key] = true
		a.stats.mu.Lock()
		n, ok := known[ref.Key]
		a.stats.mu.Unlock()
		if !ok {
			s, err := r.LoadSnapshot(ctx, ref)
			if err != nil {
				if errors.Is(err, targets.ErrNotFound) {
					continue // forgotten meanwhile
				}
				return err
			}
			n = allocated(s)
			a.stats.mu.Lock()
			known[ref.Key] = n
			a.stats.mu.Unlock()
		}
		logical += n
	}
	a.stats.mu.Lock()
	for k := range known {
		if !live[k] {
			delete(known, k)
		}
	}
	a.stats.mu.Unlock()
	label := repoLabel(name)
	a.metrics.repoSize.WithLabelValues(label).Set(float64(stored))
	a.metrics.repoLogical.WithLabelValues(label).Set(float64(logical))
	if stored > 0 {
		a.metrics.repoDedup.WithLabelValues(label).Set(float64(logical) / float64(stored))
	}
	return nil
}

func allocated(s *repo.Snapshot) int64 {
	var n int64
	for _, d := range s.Disks {
		n += d.Allocated
	}
	return n
}
