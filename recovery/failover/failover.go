// Package failover runs a recovery plan at the recovery site: it declares
// the primary lost, takes ownership of each VM through its fence record,
// restores the pinned recovery points, boots one replica per VM with the
// QEMU driver, waits for the health checks, and records what it measured
// (RTO, RPO) in the repository.
//
// A failover is idempotent. Its state (run id, time declared, recovery
// points pinned) lives in the site's state directory; a rerun after an
// interruption resumes the same run: fences it already holds stay, disks
// already restored are kept, replicas already running are left alone (the
// QEMU driver refuses a second copy of a VM, and QEMU locks the pid file
// and the disk images). Concurrent failovers of one site are serialised
// by a lock file; concurrent failovers of different sites race on the
// fence records, which exactly one wins per VM, and the losers stop before
// anything boots.
package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/recovery/health"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/repo"
)

// Options configure a failover.
type Options struct {
	Plan *plan.Plan
	// Site is this recovery site's name, the owner written into fences.
	Site string
	// StateDir holds replicas, restored disks and the run state.
	StateDir string
	// Force fails over even while the primary's heartbeat is fresh.
	Force bool
	// AdoptRun continues a failover run whose state directory was lost
	// (the fences name its run id): an explicit operator decision, since
	// two machines running one run would each boot the VMs.
	AdoptRun string
	Host     string
	Reason   string
	Logger   *slog.Logger
	// Progress, if set, is told about each step, for the terminal.
	Progress func(vm, step string)
	now      func() time.Time
}

// PrimaryAliveError: a VM's primary still sends heartbeats.
type PrimaryAliveError struct {
	Alive []fence.Heartbeat
	Lease time.Duration
	Now   time.Time
}

func (e *PrimaryAliveError) Error() string {
	msg := "the primary looks alive: "
	for i, h := range e.Alive {
		if i > 0 {
			msg += ", "
		}
		msg += fmt.Sprintf("vm %s had a heartbeat from site %s %s ago", h.VM, h.Site, h.Age(e.Now).Round(time.Second))
	}
	return msg + fmt.Sprintf(" (lease %s). Failing over a live primary risks two running copies: make sure the primary is down, then rerun with --force", e.Lease)
}

// ErrUnhealthy is wrapped when a replica failed its health checks.
var ErrUnhealthy = errors.New("replica unhealthy")

// Result is what a failover did and measured; it is also the failover
// record stored in the repository.
type Result struct {
	Run      string     `json:"run"`
	Plan     string     `json:"plan"`
	Site     string     `json:"site"`
	Host     string     `json:"host,omitempty"`
	Declared time.Time  `json:"declared"`
	Finished time.Time  `json:"finished"`
	Forced   bool       `json:"forced,omitempty"`
	Resumed  bool       `json:"resumed,omitempty"`
	OK       bool       `json:"ok"`
	VMs      []VMResult `json:"vms"`
}

// VMResult is one VM of a failover.
type VMResult struct {
	VM            string    `json:"vm"`
	Group         string    `json:"group"`
	Snapshot      string    `json:"snapshot"`
	SnapshotTime  time.Time `json:"snapshot_time"`
	Epoch         int64     `json:"epoch,omitempty"`
	Status        string    `json:"status"` // healthy, unhealthy, failed, skipped
	Error         string    `json:"error,omitempty"`
	RestoreStart  time.Time `json:"restore_start,omitzero"`
	RestoreEnd    time.Time `json:"restore_end,omitzero"`
	RestoredBytes int64     `json:"restored_bytes,omitempty"`
	FetchedBytes  int64     `json:"fetched_bytes,omitempty"`
	BootStart     time.Time `json:"boot_start,omitzero"`
	Healthy       time.Time `json:"healthy,omitzero"`
	// AlreadyRunning: a resumed run found the replica up.
	AlreadyRunning bool            `json:"already_running,omitempty"`
	PID            int             `json:"pid,omitempty"`
	Checks         []health.Result `json:"checks,omitempty"`
	// RPOSeconds: declared − recovery point time. RTOSeconds: healthy −
	// declared.
	RPOSeconds     float64 `json:"rpo_seconds"`
	RTOSeconds     float64 `json:"rto_seconds,omitempty"`
	RestoreSeconds float64 `json:"restore_seconds,omitempty"`
	BootSeconds    float64 `json:"boot_to_healthy_seconds,omitempty"`
}

// VM statuses.
const (
	StatusHealthy   = "healthy"
	StatusUnhealthy = "unhealthy"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped"
)

// runState is the persisted part of a run, for resuming.
type runState struct {
	Run      string            `json:"run"`
	Plan     string            `json:"plan"`
	Declared time.Time         `json:"declared"`
	Pins     map[string]string `json:"pins"` // vm -> snapshot id
	Forced   bool              `json:"forced,omitempty"`
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.Progress == nil {
		o.Progress = func(string, string) {}
	}
}

// target is one VM of the plan with its resolved recovery point.
type target struct {
	pv    *plan.VM
	group string
	snap  *repo.Snapshot
	spec  replica.Spec
	epoch int64
}

// Run fails the plan's VMs over to this site. It returns the result, also
// when a VM failed (then err wraps ErrUnhealthy or the VM's error).
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Result, error) {
	opts.fill()
	p := opts.Plan
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	unlock, err := lockSite(opts.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	st, resumed, err := loadRunState(opts.StateDir, p.Name)
	if err != nil {
		return nil, err
	}
	switch {
	case resumed && opts.AdoptRun != "" && opts.AdoptRun != st.Run:
		return nil, fmt.Errorf("this site's state directory holds failover run %s of plan %s: it cannot adopt run %s", st.Run, p.Name, opts.AdoptRun)
	case !resumed:
		st = &runState{Run: repo.NewSnapshotID(), Plan: p.Name, Declared: opts.now().UTC(), Pins: map[string]string{}}
		if opts.AdoptRun != "" {
			st.Run = opts.AdoptRun
			resumed = true
		}
	}

	// Everything that can be checked is checked before a fence is taken
	// or anything boots.
	targets, err := resolve(ctx, r, p, opts.StateDir, st.Pins)
	if err != nil {
		return nil, err
	}
	fences := fence.NewStore(r.Target())
	if !resumed {
		if err := checkPrimaries(ctx, fences, targets, opts); err != nil {
			return nil, err
		}
		st.Forced = opts.Force
	}
	// The run id is on disk before the first fence names it, so a run
	// killed right after taking a fence recognises the fence as its own.
	if err := saveRunState(opts.StateDir, st); err != nil {
		return nil, err
	}

	// Take the VMs, in plan order, so that of two racing runs the loser
	// stops at the first VM, before either boots anything.
	for i, tg := range targets {
		rec, err := fences.TakeOver(ctx, tg.pv.VM, fence.Claim{
			Owner: opts.Site, Run: st.Run, Plan: p.Name, Reason: opts.Reason, Host: opts.Host,
			RecoveryPoint: tg.snap.ID, RecoveryPointTime: tg.snap.Time, Forced: st.Forced,
		})
		if err != nil {
			if i == 0 && !resumed && errors.Is(err, fence.ErrFenced) {
				// Lost at the first VM: this run owns nothing and must not
				// be resumed later.
				_ = os.Remove(runStatePath(opts.StateDir, p.Name))
			}
			return nil, fmt.Errorf("take over vm %s: %w", tg.pv.VM, err)
		}
		if rec.RecoveryPoint != "" && rec.RecoveryPoint != tg.snap.ID {
			// Resumed from a fence this run wrote earlier: keep its pin.
			s, err := r.FindSnapshot(ctx, tg.pv.VM, rec.RecoveryPoint)
			if err != nil {
				return nil, fmt.Errorf("vm %s: load the pinned recovery point %s: %w", tg.pv.VM, rec.RecoveryPoint, err)
			}
			tg.snap = s
		}
		tg.epoch = rec.Epoch
		st.Pins[tg.pv.VM] = tg.snap.ID
		if err := saveRunState(opts.StateDir, st); err != nil {
			return nil, err
		}
		opts.Logger.Info("took over vm", "vm", tg.pv.VM, "epoch", rec.Epoch, "recovery_point", tg.snap.ID)
	}

	res := &Result{Run: st.Run, Plan: p.Name, Site: opts.Site, Host: opts.Host, Declared: st.Declared, Forced: st.Forced, Resumed: resumed}
	site := &replica.Site{Dir: filepath.Join(opts.StateDir, "replicas"), Logger: opts.Logger}
	runErr := bringUp(ctx, r, site, targets, opts, st, res)
	res.Finished = opts.now().UTC()
	res.OK = runErr == nil
	if err := saveRecord(ctx, r, res); err != nil {
		opts.Logger.Warn("could not store the failover record", "err", err)
	}
	return res, runErr
}

// bringUp restores and boots the VMs group by group; the VMs of a group
// come up concurrently.
func bringUp(ctx context.Context, r *repo.Repository, site *replica.Site, targets []*target, opts Options, st *runState, res *Result) error {
	byGroup := map[string][]*target{}
	for _, tg := range targets {
		byGroup[tg.group] = append(byGroup[tg.group], tg)
	}
	var firstErr error
	stopped := false
	for _, g := range opts.Plan.Groups {
		tgs := byGroup[g.Name]
		results := make([]VMResult, len(tgs))
		if stopped {
			for i, tg := range tgs {
				results[i] = baseResult(tg, st)
				results[i].Status = StatusSkipped
				results[i].Error = "an earlier group failed and its on_failure is stop"
			}
			res.VMs = append(res.VMs, results...)
			continue
		}
		var mu sync.Mutex
		eg, gctx := errgroup.WithContext(ctx)
		for i, tg := range tgs {
			eg.Go(func() error {
				vr := bringUpVM(gctx, r, site, tg, opts, st)
				mu.Lock()
				results[i] = vr
				mu.Unlock()
				return nil
			})
		}
		_ = eg.Wait()
		res.VMs = append(res.VMs, results...)
		for i, vr := range results {
			if vr.Status == StatusHealthy {
				continue
			}
			err := fmt.Errorf("vm %s: %s", vr.VM, vr.Error)
			if vr.Status == StatusUnhealthy {
				err = fmt.Errorf("vm %s: %w: %s", vr.VM, ErrUnhealthy, vr.Error)
			}
			if firstErr == nil {
				firstErr = err
			}
			if tgs[i].pv.OnFailure != plan.OnFailureContinue {
				stopped = true
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return firstErr
}

func baseResult(tg *target, st *runState) VMResult {
	return VMResult{
		VM: tg.pv.VM, Group: tg.group, Snapshot: tg.snap.ID, SnapshotTime: tg.snap.Time, Epoch: tg.epoch,
		RPOSeconds: st.Declared.Sub(tg.snap.Time).Seconds(),
	}
}

// bringUpVM restores (unless done), boots (unless running) and checks one VM.
func bringUpVM(ctx context.Context, r *repo.Repository, site *replica.Site, tg *target, opts Options, st *runState) VMResult {
	vr := baseResult(tg, st)
	fail := func(status string, err error) VMResult {
		vr.Status, vr.Error = status, err.Error()
		opts.Logger.Error("vm failed over unsuccessfully", "vm", tg.pv.VM, "err", err)
		return vr
	}
	rep, err := site.Find(ctx, tg.pv.VM)
	switch {
	case err == nil:
		vr.AlreadyRunning = true
		opts.Progress(tg.pv.VM, "already running (pid "+fmt.Sprint(rep.PID)+")")
	case errors.Is(err, replica.ErrNotRunning):
		opts.Progress(tg.pv.VM, "restoring "+tg.snap.ID[:8])
		vr.RestoreStart = opts.now().UTC()
		written, fetched, err := prepareDisks(ctx, r, tg, opts.StateDir, opts.Logger)
		vr.RestoreEnd = opts.now().UTC()
		vr.RestoredBytes, vr.FetchedBytes = written, fetched
		vr.RestoreSeconds = vr.RestoreEnd.Sub(vr.RestoreStart).Seconds()
		if err != nil {
			return fail(StatusFailed, err)
		}
		opts.Progress(tg.pv.VM, "booting")
		vr.BootStart = opts.now().UTC()
		if rep, err = site.Start(ctx, tg.spec); err != nil {
			return fail(StatusFailed, err)
		}
	default:
		return fail(StatusFailed, err)
	}
	vr.PID = rep.PID
	if vr.BootStart.IsZero() {
		vr.BootStart = opts.now().UTC()
	}
	opts.Progress(tg.pv.VM, "health checks")
	checks, ok := runChecks(ctx, tg.pv.Health, rep, tg.pv.VM)
	vr.Checks = checks
	if !ok {
		return fail(StatusUnhealthy, fmt.Errorf("health check %s failed: %s", lastFailed(checks).Name, lastFailed(checks).Err))
	}
	vr.Healthy = opts.now().UTC()
	vr.Status = StatusHealthy
	vr.RTOSeconds = vr.Healthy.Sub(st.Declared).Seconds()
	vr.BootSeconds = vr.Healthy.Sub(vr.BootStart).Seconds()
	opts.Progress(tg.pv.VM, "healthy")
	return vr
}

func lastFailed(rs []health.Result) health.Result {
	for _, r := range rs {
		if !r.OK {
			return r
		}
	}
	return health.Result{}
}

// runChecks runs a VM's checks one after the other; all must pass.
func runChecks(ctx context.Context, checks []plan.HealthCheck, rep *replica.Replica, vm string) ([]health.Result, bool) {
	t := health.Target{VM: vm, SerialLog: rep.SerialLog, QGASocket: rep.QGASocket, QMPSocket: rep.QMPSocket}
	var out []health.Result
	for _, c := range checks {
		hc, err := healthCheck(c)
		if err != nil {
			out = append(out, health.Result{Name: c.Name, Kind: c.Kind, Err: err.Error()})
			return out, false
		}
		res := health.Run(ctx, hc, t)
		out = append(out, res)
		if !res.OK {
			return out, false
		}
	}
	return out, true
}

// prepareDisks restores the recovery point into base images (kept between
// reruns: a file there is always complete) and puts a qcow2 overlay on
// each, which the replica writes into.
func prepareDisks(ctx context.Context, r *repo.Repository, tg *target, stateDir string, log *slog.Logger) (written, fetched int64, err error) {
	dir := vmDiskDir(stateDir, tg.pv.VM)
	baseDir := filepath.Join(dir, "base-"+tg.snap.ID)
	if err := os.MkdirAll(baseDir, 0o755); err != nil {
		return 0, 0, fmt.Errorf("create disk directory: %w", err)
	}
	counters := &recovery.RestoreCounters{}
	for i, d := range tg.snap.Disks {
		base := filepath.Join(baseDir, d.Name)
		if _, err := os.Stat(base); errors.Is(err, os.ErrNotExist) {
			if err := recovery.RestoreDisk(ctx, r, d, base, recovery.RestoreOptions{Counters: counters, Logger: log}); err != nil {
				return counters.BytesWritten.Load(), counters.BytesFetched.Load(),
					fmt.Errorf("restore disk %s of snapshot %s: %w", d.Name, tg.snap.ID[:8], err)
			}
		}
		overlay := tg.spec.Disks[i].Path
		if _, err := os.Stat(overlay); errors.Is(err, os.ErrNotExist) {
			if err := replica.CreateOverlay(ctx, base, "raw", overlay); err != nil {
				return 0, 0, err
			}
		}
	}
	return counters.BytesWritten.Load(), counters.BytesFetched.Load(), nil
}

func vmDiskDir(stateDir, vm string) string { return filepath.Join(stateDir, "disks", vm) }

// saveRecord stores the result in the repository, failovers/<time>-<run>.
func saveRecord(ctx context.Context, r *repo.Repository, res *Result) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode failover record: %w", err)
	}
	key := RecordPrefix + res.Declared.UTC().Format("20060102T150405Z") + "-" + res.Run + ".json"
	if _, err := r.Target().Put(ctx, key, data); err != nil {
		return fmt.Errorf("write failover record: %w", err)
	}
	return nil
}

// RecordPrefix is where failover records are kept in the repository.
const RecordPrefix = "failovers/"
