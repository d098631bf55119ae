// Package agent is the long-running replication daemon of a hypervisor
// host (`drctl agent`): it replicates the configured VMs on their cron
// schedules with bounded concurrency, applies their retention after each
// success, prunes each repository on its own schedule, tells the
// recovery side the site is alive (heartbeats), alerts when a VM's newest
// recovery point is older than its RPO target, and exposes Prometheus
// metrics.
//
// Jobs never overlap themselves: a VM whose previous run is still going
// (or waiting for a slot) when its schedule fires again is skipped and
// counted. Repositories are opened once and kept open, so the password's
// key derivation is paid once, not per run. Stopping (the context ends)
// cancels running replications at a safe point: nothing half-written is
// committed, and the next run reuses what was uploaded.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/repo"
)

// Opener opens a repository with the settings the config resolves it to.
type Opener func(ctx context.Context, rc config.Repository) (*repo.Repository, error)

// Options configure an Agent.
type Options struct {
	Config *config.Config
	Site   string
	Host   string
	Open   Opener
	// StateDir is where scheduled drills boot their replicas when neither
	// the drill entry nor the plan says.
	StateDir string
	Logger   *slog.Logger
	// RPOCheck is how often RPO targets are checked (default 10 s).
	RPOCheck time.Duration
	// StatsEvery is how often repository size and dedup ratio are
	// measured (default 10 min; each manifest is read once).
	StatsEvery time.Duration
	// HTTPClient posts webhooks (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	now        func() time.Time
}

// Agent is a running replication daemon.
type Agent struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	repos   *repoCache
	slots   *slots
	stats   repoStats

	mu  sync.Mutex
	cfg *config.Config
	// resolved holds the settings of each repository the config uses, by
	// the name jobs and metrics know it by; resolved once per (re)load, so
	// a password file that cannot be read refuses the config.
	resolved map[string]config.Repository
	cron     *cron.Cron
	vms      map[string]*vmState // by VM name, kept across reloads
	jobs     map[string]*job     // by job name (VM or group), rebuilt on reload
	// active holds the jobs running or waiting for a slot, by name: kept
	// across reloads, so a reload never starts a second run of a VM.
	active  map[string]bool
	running bool
	wg      sync.WaitGroup // running jobs
	ctx     context.Context
}

// New makes an agent for a validated config.
func New(opts Options) (*Agent, error) {
	if opts.Config == nil || opts.Open == nil {
		return nil, fmt.Errorf("agent: a config and an opener are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RPOCheck <= 0 {
		opts.RPOCheck = 10 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	a := &Agent{
		opts: opts, log: opts.Logger, metrics: newMetrics(),
		vms: map[string]*vmState{}, jobs: map[string]*job{}, active: map[string]bool{},
	}
	a.repos = newRepoCache(opts.Open)
	host, perRepo := opts.Config.Agent.Jobs()
	a.slots = newSlots(host, perRepo)
	a.cfg = opts.Config
	// Checked here too, so that a config whose jobs cannot be built (a bad
	// schedule, a password file that cannot be read) stops the agent
	// before it starts rather than at its first run.
	_, resolved, err := a.buildJobs(opts.Config)
	if err != nil {
		return nil, err
	}
	a.resolved = resolved
	return a, nil
}

// repository opens a repository of the current config by the name jobs
// and metrics know it by.
func (a *Agent) repository(ctx context.Context, name string) (*repo.Repository, error) {
	a.mu.Lock()
	rc, ok := a.resolved[name]
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("open repository %s: no longer in the config", repoLabel(name))
	}
	return a.repos.get(ctx, rc)
}

// Handler serves /metrics (Prometheus) and /healthz.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		ok := a.running
		a.mu.Unlock()
		if !ok {
			http.Error(w, "agent not running", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Registry is the agent's metrics registry (for tests and embedding).
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.reg }

// Run schedules the jobs and runs until ctx ends, then waits for the
// running jobs to stop (they see the same context) and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	if err := a.Reload(a.opts.Config); err != nil {
		return err
	}
	a.mu.Lock()
	a.running = true
	a.mu.Unlock()
	a.log.Info("agent started", "site", a.opts.Site, "vms", len(a.cfg.VMs))

	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); a.heartbeats(ctx) }()
	go func() { defer bg.Done(); a.watchRPO(ctx) }()
	go func() { defer bg.Done(); a.watchRepoStats(ctx) }()
	<-ctx.Done()

	a.mu.Lock()
	a.running = false
	c := a.cron
	a.mu.Unlock()
	if c != nil {
		c.Stop()
	}
	a.log.Info("agent stopping: waiting for running jobs to reach a safe point")
	a.wg.Wait()
	bg.Wait()
	a.repos.closeAll()
	a.log.Info("agent stopped")
	return nil
}

// Reload switches to a new, validated config: jobs are rescheduled, jobs
// that are running finish under the config they started with, and the
// state of VMs that stay (last success, RPO alerts) carries over.
func (a *Agent) Reload(cfg *config.Config) error {
	jobs, resolved, err := a.buildJobs(cfg)
	if err != nil {
		return err
	}
	c := cron.New(cron.WithParser(scheduleParser{}), cron.WithLocation(time.Local))
	for _, j := range jobs {
		if j.schedule == nil {
			continue
		}
		c.Schedule(j.schedule, cron.FuncJob(func() { a.start(j) }))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cron
	a.cfg, a.jobs, a.cron, a.resolved = cfg, jobs, c, resolved
	a.repos.keep(resolved)
	a.slots.resize(cfg.Agent.Jobs())
	for name := range a.vms {
		if _, ok := cfg.VMs[name]; !ok {
			delete(a.vms, name)
			a.metrics.forget(name)
		}
	}
	for name, vm := range cfg.VMs {
		st := a.vms[name]
		if st == nil {
			st = &vmState{name: name}
			a.vms[name] = st
		}
		st.mu.Lock() // the RPO watcher reads them
		st.rpo = vm.RPOTarget()
		st.repository = repoOf(cfg, vm)
		st.mu.Unlock()
		a.metrics.rpoTarget.WithLabelValues(name).Set(vm.RPOTarget().Seconds())
	}
	if old != nil {
		old.Stop()
	}
	if a.ctx != nil {
		c.Start()
	}
	a.log.Info("schedule loaded", "jobs", len(jobs))
	return nil
}

// scheduleParser lets cron use the config's schedule syntax.
type scheduleParser struct{}

func (scheduleParser) Parse(s string) (cron.Schedule, error) { return config.ParseSchedule(s) }

// start runs a job in the background unless it is already running or
// waiting: a job that overruns its slot is never started twice.
func (a *Agent) start(j *job) {
	a.mu.Lock()
	ctx := a.ctx
	if a.active[j.name] || !a.running || ctx == nil || ctx.Err() != nil {
		busy := a.active[j.name]
		a.mu.Unlock()
		if busy {
			a.log.Warn("job still running from its previous slot: skipped", "job", j.name)
			for _, vm := range j.vms {
				a.metrics.runs.WithLabelValues(vm, "skipped").Inc()
			}
		}
		return
	}
	a.active[j.name] = true
	a.wg.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.active, j.name)
			a.mu.Unlock()
		}()
		j.run(ctx)
	}()
}

// RunOnce runs every replication job once (respecting the concurrency
// limits), with retention, and with prune when prune is set; it returns
// an error naming the jobs that failed.
func (a *Agent) RunOnce(ctx context.Context, prune bool) error {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	jobs, resolved, err := a.buildJobs(a.opts.Config)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.jobs, a.resolved = jobs, resolved
	for name, vm := range a.opts.Config.VMs {
		a.vms[name] = &vmState{name: name, rpo: vm.RPOTarget(), repository: repoOf(a.opts.Config, vm)}
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for _, j := range jobs {
		if (j.kind == jobPrune && !prune) || j.kind == jobDrill {
			continue // drills run on their schedule, or by drctl drill
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.run(ctx); err != nil {
				mu.Lock()
				failed = append(failed, j.name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	a.repos.closeAll()
	if len(failed) > 0 {
		return fmt.Errorf("%d jobs failed: %v (the log says why)", len(failed), failed)
	}
	return nil
}
