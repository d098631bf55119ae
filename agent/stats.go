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
// index files. It also counts each VM's snapshots.
// Manifests never change, so each is read once per agent. Between scans,
// which list every pack, commits and retention move the figures by what
// they know (the packs a run wrote, the snapshots kept or forgotten), so
// the gauges are live without a LIST per snapshot; the next scan corrects
// what they cannot see (pack headers, other writers, prune).
type repoStats struct {
	mu    sync.Mutex
	repos map[string]*repoFigures
}

type repoFigures struct {
	snaps   map[string]snapFigures // by snapshot id
	stored  int64                  // bytes of packs and index files
	scanned bool                   // stored was measured once
	// forgotten holds ids retention removed, so that a scan that listed
	// them a moment before does not count them again.
	forgotten map[string]bool
}

type snapFigures struct {
	vm        string
	allocated int64
}

func (s *repoStats) of(repository string) *repoFigures {
	if s.repos == nil {
		s.repos = map[string]*repoFigures{}
	}
	f := s.repos[repository]
	if f == nil {
		f = &repoFigures{snaps: map[string]snapFigures{}, forgotten: map[string]bool{}}
		s.repos[repository] = f
	}
	return f
}

// vmsOn lists the VMs of the current config kept in a repository: the
// ones whose snapshot counts this agent publishes.
func (a *Agent) vmsOn(repository string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var vms []string
	for name, vm := range a.cfg.VMs {
		if repoOf(a.cfg, vm) == repository {
			vms = append(vms, name)
		}
	}
	return vms
}

// publishLocked sets a repository's gauges from what stats holds; it does
// nothing before the first scan, so a gauge never shows a partial sum.
func (a *Agent) publishLocked(repository string, vms []string) {
	f := a.stats.of(repository)
	if !f.scanned {
		return
	}
	var logical int64
	perVM := make(map[string]int, len(vms))
	for _, sn := range f.snaps {
		logical += sn.allocated
		perVM[sn.vm]++
	}
	label := repoLabel(repository)
	a.metrics.repoSize.WithLabelValues(label).Set(float64(f.stored))
	a.metrics.repoLogical.WithLabelValues(label).Set(float64(logical))
	if f.stored > 0 {
		a.metrics.repoDedup.WithLabelValues(label).Set(float64(logical) / float64(f.stored))
	}
	for _, vm := range vms {
		a.metrics.snapshots.WithLabelValues(vm).Set(float64(perVM[vm]))
	}
}

// statsCommitted counts a snapshot just committed by this agent.
func (a *Agent) statsCommitted(repository string, snap *repo.Snapshot) {
	vms := a.vmsOn(repository)
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	f := a.stats.of(repository)
	if _, ok := f.snaps[snap.ID]; !ok {
		f.snaps[snap.ID] = snapFigures{vm: snap.VM, allocated: allocated(snap)}
		f.stored += snap.Stats.BytesStored
	}
	a.publishLocked(repository, vms)
}

// statsForgot drops forgotten snapshots; their packs stay until prune.
func (a *Agent) statsForgot(repository string, refs []repo.SnapshotRef) {
	vms := a.vmsOn(repository)
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	f := a.stats.of(repository)
	for _, ref := range refs {
		delete(f.snaps, ref.ID)
		f.forgotten[ref.ID] = true
	}
	a.publishLocked(repository, vms)
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

// scanRepo measures one repository again from what it holds.
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
	f := a.stats.of(name)
	// Ids known before the listing; one committed while the scan runs is
	// not in refs but must not be dropped as forgotten.
	before := make(map[string]bool, len(f.snaps))
	for id := range f.snaps {
		before[id] = true
	}
	var missing []repo.SnapshotRef
	for _, ref := range refs {
		if _, ok := f.snaps[ref.ID]; !ok && !f.forgotten[ref.ID] {
			missing = append(missing, ref)
		}
	}
	a.stats.mu.Unlock()
	found := make(map[string]snapFigures, len(missing))
	for _, ref := range missing {
		s, err := r.LoadSnapshot(ctx, ref)
		if err != nil {
			if errors.Is(err, targets.ErrNotFound) {
				continue // forgotten meanwhile
			}
			return err
		}
		found[ref.ID] = snapFigures{vm: s.VM, allocated: allocated(s)}
	}
	live := make(map[string]bool, len(refs))
	for _, ref := range refs {
		live[ref.ID] = true
	}
	vms := a.vmsOn(name)
	a.stats.mu.Lock()
	defer a.stats.mu.Unlock()
	f = a.stats.of(name)
	for id, sn := range found {
		if !f.forgotten[id] {
			f.snaps[id] = sn
		}
	}
	for id := range f.snaps {
		if before[id] && !live[id] {
			delete(f.snaps, id)
		}
	}
	for id := range f.forgotten {
		if !live[id] {
			delete(f.forgotten, id) // gone from the listing: no scan sees it again
		}
	}
	f.stored = stored
	f.scanned = true
	a.publishLocked(name, vms)
	return nil
}

func allocated(s *repo.Snapshot) int64 {
	var n int64
	for _, d := range s.Disks {
		n += d.Allocated
	}
	return n
}
