package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/recovery/health"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/repo"
)

// runner brings the VMs of a plan up at one place: a failover's site or
// a drill's own directory.
type runner struct {
	r        *repo.Repository
	site     *replica.Site
	stateDir string
	declared time.Time
	log      *slog.Logger
	progress func(vm, step string)
	now      func() time.Time
}

// crashPoll is how often a replica under health checks is looked at: a
// QEMU that died must fail its checks at once, not at their timeout.
const crashPoll = 500 * time.Millisecond

// bringUp restores and boots the VMs group by group; the VMs of a group
// come up concurrently. A VM that fails with on_failure: stop keeps the
// later groups from starting.
func (u *runner) bringUp(ctx context.Context, groups []plan.Group, targets []*target) ([]VMResult, error) {
	byGroup := map[string][]*target{}
	for _, tg := range targets {
		byGroup[tg.group] = append(byGroup[tg.group], tg)
	}
	var all []VMResult
	var firstErr error
	stopped := false
	for _, g := range groups {
		tgs := byGroup[g.Name]
		results := make([]VMResult, len(tgs))
		if stopped {
			for i, tg := range tgs {
				results[i] = u.baseResult(tg)
				results[i].Status = StatusSkipped
				results[i].Error = "an earlier group failed and its on_failure is stop"
			}
			all = append(all, results...)
			continue
		}
		var mu sync.Mutex
		var eg errgroup.Group
		for i, tg := range tgs {
			eg.Go(func() error {
				vr := u.bringUpVM(ctx, tg)
				mu.Lock()
				results[i] = vr
				mu.Unlock()
				return nil
			})
		}
		_ = eg.Wait()
		all = append(all, results...)
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
			return all, ctx.Err()
		}
	}
	return all, firstErr
}

func (u *runner) baseResult(tg *target) VMResult {
	return VMResult{
		VM: tg.pv.VM, Group: tg.group, Snapshot: tg.snap.ID, SnapshotTime: tg.snap.Time, Epoch: tg.epoch,
		RPOSeconds: u.declared.Sub(tg.snap.Time).Seconds(),
	}
}

// bringUpVM restores (unless done), boots (unless running) and checks one VM.
func (u *runner) bringUpVM(ctx context.Context, tg *target) VMResult {
	vm := tg.pv.VM
	vr := u.baseResult(tg)
	fail := func(status string, err error) VMResult {
		vr.Status, vr.Error = status, err.Error()
		u.log.Error("vm did not come up", "vm", vm, "err", err)
		return vr
	}
	rep, err := u.site.Find(ctx, vm)
	switch {
	case err == nil:
		vr.AlreadyRunning = true
		u.progress(vm, fmt.Sprintf("already running (pid %d)", rep.PID))
	case errors.Is(err, replica.ErrNotRunning):
		u.progress(vm, "restoring "+tg.snap.ID[:8])
		vr.RestoreStart = u.now().UTC()
		written, fetched, err := prepareDisks(ctx, u.r, tg, u.stateDir, u.log)
		vr.RestoreEnd = u.now().UTC()
		vr.RestoredBytes, vr.FetchedBytes = written, fetched
		vr.RestoreSeconds = vr.RestoreEnd.Sub(vr.RestoreStart).Seconds()
		if err != nil {
			return fail(StatusFailed, err)
		}
		u.progress(vm, "booting")
		vr.BootStart = u.now().UTC()
		if rep, err = u.site.Start(ctx, tg.spec); err != nil {
			return fail(StatusFailed, err)
		}
	default:
		return fail(StatusFailed, err)
	}
	vr.PID = rep.PID
	if vr.BootStart.IsZero() {
		vr.BootStart = u.now().UTC()
	}

	cctx, stop := u.watch(ctx, vm)
	defer stop()
	u.progress(vm, "health checks")
	checks, ok := runChecks(cctx, tg.pv.Health, rep, vm)
	vr.Checks = checks
	if ok && len(tg.drillChecks) > 0 {
		u.progress(vm, "drill checks")
		vr.DrillChecks, ok = runChecks(cctx, tg.drillChecks, rep, vm)
	}
	if !ok {
		failed := lastFailed(append(append([]health.Result(nil), vr.Checks...), vr.DrillChecks...))
		why := fmt.Errorf("check %s failed: %s", failed.Name, failed.Err)
		if cause := context.Cause(cctx); cctx.Err() != nil && ctx.Err() == nil {
			why = fmt.Errorf("check %s failed: %w", failed.Name, cause)
		}
		return fail(StatusUnhealthy, why)
	}
	vr.Healthy = u.now().UTC()
	vr.Status = StatusHealthy
	vr.RTOSeconds = vr.Healthy.Sub(u.declared).Seconds()
	vr.BootSeconds = vr.Healthy.Sub(vr.BootStart).Seconds()
	u.progress(vm, "healthy")
	return vr
}

// watch returns a context that ends when the VM's QEMU is gone, with the
// end of its log as the cause.
func (u *runner) watch(ctx context.Context, vm string) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(crashPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-cctx.Done():
				return
			case <-t.C:
			}
			if _, err := u.site.Find(cctx, vm); errors.Is(err, replica.ErrNotRunning) {
				cancel(fmt.Errorf("the replica's QEMU exited: %s", qemuLogTail(filepath.Join(u.site.Dir, vm, "qemu.log"))))
				return
			}
		}
	}()
	return cctx, func() { close(done); cancel(nil) }
}

// qemuLogTail is the end of a replica's QEMU log, for error messages.
func qemuLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "no QEMU log"
	}
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return "QEMU said: " + string(b)
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
