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
	"time"

	"github.com/drctl/drctl/fence"
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
	// DrillChecks are the plan's drill-only checks (drills only).
	DrillChecks []health.Result `json:"drill_checks,omitempty"`
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
	pv          *plan.VM
	group       string
	snap        *repo.Snapshot
	spec        replica.Spec
	epoch       int64
	drillChecks []plan.HealthCheck
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
	u := &runner{
		r: r, site: &replica.Site{Dir: filepath.Join(opts.StateDir, "replicas"), Logger: opts.Logger},
		stateDir: opts.StateDir, declared: st.Declared, log: opts.Logger, progress: opts.Progress, now: opts.now,
	}
	var runErr error
	res.VMs, runErr = u.bringUp(ctx, p.Groups, targets)
	res.Finished = opts.now().UTC()
	res.OK = runErr == nil
	if err := saveRecord(ctx, r, res); err != nil {
		opts.Logger.Warn("could not store the failover record", "err", err)
	}
	return res, runErr
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
