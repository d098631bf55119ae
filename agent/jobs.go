package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/recovery/failover"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

type jobKind int

const (
	jobVM jobKind = iota
	jobGroup
	jobPrune
	jobDrill
)

// job is one schedulable unit: a VM, a consistency group, or the prune of
// one repository.
type job struct {
	a          *Agent
	name       string
	kind       jobKind
	schedule   cron.Schedule
	repository string            // as the config names it: metrics label, slot key
	rc         config.Repository // its settings when the job was built
	vms        []string          // VM names (one for jobVM)
	drill      config.Drill
	cfg        *config.Config
}

// vmState is what the agent knows about a VM across runs and reloads.
type vmState struct {
	name       string
	repository string
	rpo        time.Duration

	mu          sync.Mutex
	lastSuccess time.Time // newest committed snapshot
	known       bool      // lastSuccess was looked up in the repository
	violated    bool      // the newest recovery point is older than the target
	alerting    bool      // the webhook was told "violated" (and not yet "recovered")
}

// buildJobs makes the jobs of a config: one per VM with a schedule, one
// per consistency group, one prune job per repository in use.
func (a *Agent) buildJobs(cfg *config.Config) (map[string]*job, map[string]config.Repository, error) {
	jobs := map[string]*job{}
	repos := map[string]bool{}
	resolved := map[string]config.Repository{}
	resolve := func(name, what string) (config.Repository, error) {
		if rc, ok := resolved[name]; ok {
			return rc, nil
		}
		rc, err := cfg.ResolveRepository(name)
		if err != nil {
			return rc, fmt.Errorf("%s: repository %s: %w", what, repoLabel(name), err)
		}
		resolved[name] = rc
		return rc, nil
	}
	names := cfg.VMNames()
	for _, name := range names {
		vm := cfg.VMs[name]
		vm.Repository = repoOf(cfg, vm)
		repos[vm.Repository] = true
		rc, err := resolve(vm.Repository, "vm "+name)
		if err != nil {
			return nil, nil, err
		}
		var sched cron.Schedule
		if vm.Schedule != "" {
			s, err := config.ParseSchedule(vm.Schedule)
			if err != nil {
				return nil, nil, fmt.Errorf("vm %s: schedule: %w", name, err)
			}
			sched = s
		}
		if vm.Group != "" {
			g := jobs["group:"+vm.Group]
			if g == nil {
				g = &job{a: a, name: "group:" + vm.Group, kind: jobGroup, repository: vm.Repository, rc: rc, cfg: cfg}
				jobs[g.name] = g
			}
			if vm.Repository != g.repository {
				return nil, nil, fmt.Errorf("group %s: its VMs use different repositories (%q, %q): a group is committed to one repository", vm.Group, g.repository, vm.Repository)
			}
			g.vms = append(g.vms, name)
			if g.schedule == nil {
				g.schedule = sched
			}
			continue
		}
		jobs[name] = &job{a: a, name: name, kind: jobVM, schedule: sched, repository: vm.Repository, rc: rc, vms: []string{name}, cfg: cfg}
	}
	for _, d := range cfg.Drills {
		sched, err := config.ParseSchedule(d.Schedule)
		if err != nil {
			return nil, nil, fmt.Errorf("drill of %s: schedule: %w", d.Plan, err)
		}
		name := "drill:" + d.Plan
		r := repoOf(cfg, config.VM{Repository: d.Repository})
		rc, err := resolve(r, "drill of "+d.Plan)
		if err != nil {
			return nil, nil, err
		}
		jobs[name] = &job{a: a, name: name, kind: jobDrill, schedule: sched, repository: r, rc: rc, drill: d, cfg: cfg}
	}
	if s := cfg.Agent.PruneSchedule(); s != "" {
		sched, err := config.ParseSchedule(s)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: prune schedule: %w", err)
		}
		for r := range repos {
			name := "prune:" + r
			jobs[name] = &job{a: a, name: name, kind: jobPrune, schedule: sched, repository: r, rc: resolved[r], cfg: cfg}
		}
	}
	return jobs, resolved, nil
}

// run runs the job once, in a concurrency slot.
func (j *job) run(ctx context.Context) error {
	a := j.a
	release, err := a.slots.acquire(ctx, j.repository)
	if err != nil {
		return err
	}
	defer release()
	a.metrics.running.Inc()
	defer a.metrics.running.Dec()
	switch j.kind {
	case jobPrune:
		return j.prune(ctx)
	case jobDrill:
		return j.runDrill(ctx)
	case jobGroup:
		return j.replicateGroup(ctx)
	}
	return j.replicateVM(ctx)
}

// options builds the replicate options of one VM.
func (j *job) options(name string, r *repo.Repository, counters *replicate.Counters) replicate.Options {
	vm := j.cfg.VMs[name]
	o := replicate.Options{VM: name, Host: j.a.opts.Host, Logger: j.a.log, Counters: counters,
		Fence: fence.NewStore(r.Target()), Site: j.a.opts.Site}
	if vm.QMP != "" {
		o.QEMU = &replicate.QEMU{QMPSocket: vm.QMP, QGASocket: vm.QGA}
	}
	for _, d := range vm.Disks {
		o.Disks = append(o.Disks, replicate.Disk{Name: d.Name, Path: d.Path})
	}
	if vm.Firmware != "" {
		o.Hardware = &repo.Hardware{Firmware: vm.Firmware}
	}
	return o
}

func (j *job) replicateVM(ctx context.Context) error {
	a := j.a
	name := j.vms[0]
	start := a.opts.now()
	r, err := a.repos.get(ctx, j.rc)
	if err != nil {
		return a.failed(name, start, err)
	}
	a.beat(ctx, r, name)
	counters := &replicate.Counters{}
	snap, err := replicate.Run(ctx, r, j.options(name, r, counters))
	if err != nil {
		a.pauseIfFenced(j.cfg.VMs[name], err)
		return a.failed(name, start, err)
	}
	a.succeeded(name, snap, start)
	a.statsCommitted(j.repository, snap)
	return a.retain(ctx, r, j.repository, j.cfg.VMs[name])
}

func (j *job) replicateGroup(ctx context.Context) error {
	a := j.a
	start := a.opts.now()
	r, err := a.repos.get(ctx, j.rc)
	if err != nil {
		for _, name := range j.vms {
			_ = a.failed(name, start, err)
		}
		return err
	}
	var members []replicate.Options
	for _, name := range j.vms {
		a.beat(ctx, r, name)
		members = append(members, j.options(name, r, &replicate.Counters{}))
	}
	snaps, err := replicate.RunGroup(ctx, r, j.name[len("group:"):], members)
	done := map[string]bool{}
	for _, s := range snaps {
		done[s.VM] = true
		a.succeeded(s.VM, s, start)
		a.statsCommitted(j.repository, s)
	}
	var errs []error
	for _, name := range j.vms {
		if !done[name] {
			a.pauseIfFenced(j.cfg.VMs[name], err)
			errs = append(errs, a.failed(name, start, err))
			continue
		}
		if rerr := a.retain(ctx, r, j.repository, j.cfg.VMs[name]); rerr != nil {
			errs = append(errs, rerr)
		}
	}
	return errors.Join(errs...)
}

// retain applies the VM's keep rules after a successful snapshot.
func (a *Agent) retain(ctx context.Context, r *repo.Repository, repository string, vm config.VM) error {
	if vm.Keep == nil {
		return nil
	}
	p := repo.KeepPolicy{Last: vm.Keep.Last, Hourly: vm.Keep.Hourly, Daily: vm.Keep.Daily, Weekly: vm.Keep.Weekly,
		Monthly: vm.Keep.Monthly, Yearly: vm.Keep.Yearly}
	if p.Empty() {
		return nil
	}
	res, err := r.Forget(ctx, vm.Name, p, false)
	if err != nil {
		a.log.Error("retention failed", "vm", vm.Name, "err", err)
		return fmt.Errorf("retention of %s: %w", vm.Name, err)
	}
	a.statsForgot(repository, res.Remove)
	if len(res.Remove) > 0 {
		a.log.Info("retention", "vm", vm.Name, "forgot", len(res.Remove), "kept", len(res.Keep))
	}
	return nil
}

func (j *job) prune(ctx context.Context) error {
	a := j.a
	r, err := a.repos.get(ctx, j.rc)
	if err != nil {
		a.log.Error("prune: cannot open the repository", "repository", repoLabel(j.repository), "err", err)
		return err
	}
	start := a.opts.now()
	res, err := r.Prune(ctx, repo.PruneOptions{MemoryLimit: j.cfg.Agent.PruneMemoryBytes()})
	a.metrics.prunes.WithLabelValues(repoLabel(j.repository), result(err)).Inc()
	if err != nil {
		a.log.Error("prune failed", "repository", repoLabel(j.repository), "err", err)
		return err
	}
	a.log.Info("pruned", "repository", repoLabel(j.repository), "freed", res.BytesFreed, "packs_deleted", res.PacksDeleted,
		"took", a.opts.now().Sub(start).Round(time.Millisecond))
	if err := a.scanRepo(ctx, j.repository); err != nil {
		a.log.Warn("could not measure the repository after prune", "repository", repoLabel(j.repository), "err", err)
	}
	return nil
}

// repoOf is the repository of a VM as the config names it: its own, or
// the default one, so that metrics and the open repositories are keyed
// the same way for both.
func repoOf(cfg *config.Config, vm config.VM) string {
	if vm.Repository == "" {
		return cfg.Repository
	}
	return vm.Repository
}

// runDrill runs a scheduled DR drill. The plan is read at each run, so
// edits to it need no reload.
func (j *job) runDrill(ctx context.Context) error {
	a := j.a
	p, err := plan.Load(j.drill.Plan)
	if err != nil {
		a.metrics.drills.WithLabelValues(j.drill.Plan, "error").Inc()
		a.log.Error("drill: the plan cannot be read", "plan", j.drill.Plan, "err", err)
		return err
	}
	if p.Site == "" {
		p.Site = a.opts.Site
	}
	dir := j.drill.StateDir
	if dir == "" {
		dir = p.StateDir
	}
	if dir == "" {
		dir = a.opts.StateDir
	}
	r, err := a.repos.get(ctx, j.rc)
	if err != nil {
		a.metrics.drills.WithLabelValues(p.Name, "error").Inc()
		a.log.Error("drill: cannot open the repository", "plan", p.Name, "err", err)
		return err
	}
	a.log.Info("drill started", "plan", p.Name)
	d, err := failover.Drill(ctx, r, failover.DrillOptions{Plan: p, Site: p.Site, Host: a.opts.Host, StateDir: dir, Logger: a.log})
	if d == nil {
		a.metrics.drills.WithLabelValues(p.Name, "error").Inc()
		a.log.Error("drill could not run", "plan", p.Name, "err", err)
		return err
	}
	res := "failed"
	if d.Passed {
		res = "passed"
	}
	a.metrics.drills.WithLabelValues(p.Name, res).Inc()
	a.metrics.drillPassed.WithLabelValues(p.Name).Set(map[bool]float64{false: 0, true: 1}[d.Passed])
	a.metrics.drillTime.WithLabelValues(p.Name).Set(float64(d.Started.UnixNano()) / 1e9)
	var rto float64
	for _, v := range d.VMs {
		rto = max(rto, v.RTOSeconds)
	}
	a.metrics.drillRTO.WithLabelValues(p.Name).Set(rto)
	if d.Passed {
		a.log.Info("drill passed", "plan", p.Name, "drill", d.ID, "max_rto_s", rto)
		return nil
	}
	a.log.Error("drill failed", "plan", p.Name, "drill", d.ID, "err", err)
	return fmt.Errorf("drill %s of plan %s failed: %w", d.ID, p.Name, err)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func repoLabel(r string) string {
	if r == "" {
		return "default"
	}
	return r
}

func (a *Agent) beat(ctx context.Context, r *repo.Repository, vm string) {
	if err := fence.NewStore(r.Target()).Beat(ctx, a.opts.Site, vm, a.opts.Host); err != nil {
		a.log.Warn("heartbeat failed", "vm", vm, "err", err)
	}
}

func (a *Agent) succeeded(vm string, snap *repo.Snapshot, start time.Time) {
	took := a.opts.now().Sub(start)
	a.log.Info("snapshot committed", "vm", vm, "snapshot", snap.ID[:8], "read", snap.Stats.BytesRead,
		"stored", snap.Stats.BytesStored, "took", took.Round(time.Millisecond))
	m := a.metrics
	m.runs.WithLabelValues(vm, "ok").Inc()
	m.lastSuccess.WithLabelValues(vm).Set(float64(snap.Time.UnixNano()) / 1e9)
	m.duration.WithLabelValues(vm).Set(took.Seconds())
	m.bytesRead.WithLabelValues(vm).Add(float64(snap.Stats.BytesRead))
	m.bytesUploaded.WithLabelValues(vm).Add(float64(snap.Stats.BytesStored))
	if st := a.state(vm); st != nil {
		st.mu.Lock()
		if snap.Time.After(st.lastSuccess) {
			st.lastSuccess = snap.Time
		}
		st.known = true
		st.mu.Unlock()
	}
}

func (a *Agent) failed(vm string, start time.Time, err error) error {
	if errors.Is(err, context.Canceled) {
		a.log.Info("replication stopped at a safe point: the next run resumes", "vm", vm)
		a.metrics.runs.WithLabelValues(vm, "cancelled").Inc()
		return err
	}
	a.log.Error("replication failed", "vm", vm, "err", err, "after", a.opts.now().Sub(start).Round(time.Millisecond))
	a.metrics.runs.WithLabelValues(vm, "error").Inc()
	a.metrics.lastError.WithLabelValues(vm).Set(float64(a.opts.now().UnixNano()) / 1e9)
	return err
}

func (a *Agent) state(vm string) *vmState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.vms[vm]
}

// pauseIfFenced pauses a VM found failed over to another site, when the
// config asks for it: a running old primary next to the replica is the
// split brain fencing exists to prevent.
func (a *Agent) pauseIfFenced(vm config.VM, err error) {
	if !errors.Is(err, fence.ErrFenced) || !vm.PauseWhenFenced || vm.QMP == "" {
		return
	}
	replicate.PauseFenced(vm.Name, vm.QMP, a.log)
}

// heartbeats tells the recovery side, every period, that this site is
// alive, for every VM it replicates.
func (a *Agent) heartbeats(ctx context.Context) {
	for {
		a.mu.Lock()
		cfg := a.cfg
		a.mu.Unlock()
		names := cfg.VMNames()
		sort.Strings(names)
		for _, name := range names {
			r, err := a.repository(ctx, repoOf(cfg, cfg.VMs[name]))
			if err != nil {
				continue
			}
			a.beat(ctx, r, name)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.Agent.HeartbeatEvery()):
		}
	}
}
