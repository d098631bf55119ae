package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/drctl/drctl/recovery/health"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/recovery/report"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// DrillNetwork says how drill replicas are isolated.
const DrillNetwork = "QEMU user networking with restrict=on: no route out of the guest (host loopback and every other address unreachable); host port forwards of the plan are kept for inbound checks"

// DrillOptions configure a DR drill.
type DrillOptions struct {
	Plan     *plan.Plan
	Site     string
	Host     string
	StateDir string // drills run in StateDir/drills/<plan>-<id>
	// Keep leaves the replicas running for inspection, for KeepFor after
	// the drill's checks end.
	Keep     bool
	KeepFor  time.Duration
	Logger   *slog.Logger
	Progress func(vm, step string)
	now      func() time.Time
}

// DrillPrefix is where drill records are kept in the repository.
const DrillPrefix = "drills/"

// teardownTimeout bounds the teardown, which runs on its own context so
// that Ctrl-C still tears down.
const teardownTimeout = 2 * time.Minute

// Drill runs the plan as a failover would, but without taking any fence,
// with every NIC on an isolated network, into a directory of its own that
// is removed afterwards (unless kept). The repository is only read,
// except for the drill record written at the end. The returned report
// says whether every VM passed; err is set when the drill could not run
// or was interrupted.
func Drill(ctx context.Context, r *repo.Repository, opts DrillOptions) (*report.Drill, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.Progress == nil {
		opts.Progress = func(string, string) {}
	}
	p := opts.Plan
	base := filepath.Join(opts.StateDir, "drills")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("create drill directory: %w", err)
	}
	unlock, err := lockFile(filepath.Join(base, p.Name+".lock"), "a drill of plan "+p.Name+" is already running at this site")
	if err != nil {
		return nil, err
	}
	defer unlock()

	d := &report.Drill{Version: 1, ID: repo.NewSnapshotID(), Plan: p.Name, Site: opts.Site, Host: opts.Host,
		Started: opts.now().UTC(), Network: DrillNetwork}
	dir := filepath.Join(base, p.Name+"-"+d.ID)
	tgs, err := resolve(ctx, r, p, dir, nil)
	if err != nil {
		return nil, err
	}
	for _, tg := range tgs {
		isolate(&tg.spec)
		for _, c := range p.Drill.Checks {
			if c.VM == tg.pv.VM {
				tg.drillChecks = append(tg.drillChecks, c.HealthCheck)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create drill directory: %w", err)
	}
	if err := writeDrillState(dir, drillState{ID: d.ID, Plan: p.Name, PID: os.Getpid(), Started: d.Started}); err != nil {
		return nil, err
	}
	u := &runner{
		r: r, site: &replica.Site{Dir: filepath.Join(dir, "replicas"), Logger: opts.Logger},
		stateDir: dir, declared: d.Started, log: opts.Logger, progress: opts.Progress, now: opts.now,
	}
	results, runErr := u.bringUp(ctx, p.Groups, tgs)
	d.Finished = opts.now().UTC()
	for i, vr := range results {
		d.VMs = append(d.VMs, drillVM(vr, tgs[i].snap))
	}
	d.Passed = runErr == nil && len(d.VMs) > 0
	if runErr != nil && ctx.Err() != nil {
		d.Error = "interrupted: " + context.Cause(ctx).Error()
	}

	// Teardown on its own context: an interrupted drill must still stop
	// its replicas.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	if opts.Keep && ctx.Err() == nil {
		d.Kept, d.KeepUntil = true, opts.now().Add(opts.KeepFor).UTC()
		if err := writeDrillState(dir, drillState{ID: d.ID, Plan: p.Name, Started: d.Started, KeepUntil: d.KeepUntil}); err != nil {
			opts.Logger.Warn("could not record the kept drill", "err", err)
		}
		d.Events = append(d.Events, report.Event{Time: d.Finished, What: "replicas kept until " + d.KeepUntil.Format(time.RFC3339)})
	} else {
		if err := TeardownDrill(tctx, dir); err != nil {
			opts.Logger.Error("drill teardown incomplete", "dir", dir, "err", err)
			d.Error = strings.TrimPrefix(d.Error+"; teardown: "+err.Error(), "; ")
			d.Passed = false
		}
		d.TornDown = opts.now().UTC()
		d.Events = append(d.Events, report.Event{Time: d.TornDown, What: "teardown"})
	}
	if err := SaveDrill(tctx, r.Target(), d); err != nil {
		opts.Logger.Warn("could not store the drill record", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	if runErr == nil && !d.Passed {
		runErr = errors.New("the drill did not pass")
	}
	return d, runErr
}

// isolate puts every NIC of a drill replica on its own restricted user
// network: the guest gets an address and a gateway but no route anywhere,
// so it cannot reach production or clash with production addresses.
// Inbound host forwards of a user network in the plan are kept, so TCP
// health checks still work.
func isolate(spec *replica.Spec) {
	for src, n := range spec.Networks {
		iso := replica.Network{Kind: replica.NetUser, Restrict: true}
		if n.Kind == replica.NetUser {
			iso.Forwards = n.Forwards
		}
		spec.Networks[src] = iso
	}
}

func drillVM(vr VMResult, snap *repo.Snapshot) report.VM {
	v := report.VM{
		VM: vr.VM, Group: vr.Group, Snapshot: vr.Snapshot, SnapshotTime: vr.SnapshotTime, Consistency: snap.Consistency,
		RPOSeconds: vr.RPOSeconds, RestoreStart: vr.RestoreStart, RestoreEnd: vr.RestoreEnd, BootStart: vr.BootStart,
		Healthy: vr.Healthy, RestoreSeconds: vr.RestoreSeconds, BootSeconds: vr.BootSeconds, RTOSeconds: vr.RTOSeconds,
		RestoredBytes: vr.RestoredBytes, Error: vr.Error,
	}
	switch vr.Status {
	case StatusHealthy:
		v.Status = "passed"
	case StatusSkipped:
		v.Status = "skipped"
	default:
		v.Status = "failed"
	}
	add := func(rs []health.Result, drillOnly bool) {
		for _, c := range rs {
			v.Checks = append(v.Checks, report.Check{Name: c.Name, Kind: c.Kind, DrillOnly: drillOnly, OK: c.OK,
				Started: c.Started, Finished: c.Finished, Attempts: c.Attempts, Output: c.Output, Err: c.Err})
		}
	}
	add(vr.Checks, false)
	add(vr.DrillChecks, true)
	return v
}

// drillState is what a drill's directory says about it, for `drill stop`
// and the time-to-live of kept replicas.
type drillState struct {
	ID        string    `json:"id"`
	Plan      string    `json:"plan"`
	PID       int       `json:"pid,omitempty"` // the drctl running it, while it runs
	Started   time.Time `json:"started"`
	KeepUntil time.Time `json:"keep_until,omitzero"`
}

func writeDrillState(dir string, st drillState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode drill state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "drill.json"), data, 0o644); err != nil {
		return fmt.Errorf("write drill state: %w", err)
	}
	return nil
}

// KeptDrill is a drill whose replicas were kept running.
type KeptDrill struct {
	Dir       string
	ID, Plan  string
	Started   time.Time
	KeepUntil time.Time
	Running   []string // VMs with a running replica
}

// KeptDrills lists the drill directories under stateDir that are not
// being run by a drctl right now: kept drills, and leftovers of a drill
// whose drctl was killed.
func KeptDrills(ctx context.Context, stateDir string) ([]KeptDrill, error) {
	dirs, _ := filepath.Glob(filepath.Join(stateDir, "drills", "*", "drill.json"))
	var out []KeptDrill
	for _, f := range dirs {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st drillState
		if json.Unmarshal(data, &st) != nil {
			continue
		}
		if st.PID > 0 && syscall.Kill(st.PID, 0) == nil && st.KeepUntil.IsZero() {
			continue // still being run
		}
		dir := filepath.Dir(f)
		k := KeptDrill{Dir: dir, ID: st.ID, Plan: st.Plan, Started: st.Started, KeepUntil: st.KeepUntil}
		reps, _ := (&replica.Site{Dir: filepath.Join(dir, "replicas")}).List(ctx)
		for _, rep := range reps {
			if rep.Running {
				k.Running = append(k.Running, rep.VM)
			}
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// TeardownDrill stops a drill's replicas and removes its directory (the
// overlays and restored disks). Drill disks are throw-away, so the
// replicas are stopped hard at once.
func TeardownDrill(ctx context.Context, dir string) error {
	site := &replica.Site{Dir: filepath.Join(dir, "replicas")}
	reps, err := site.List(ctx)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list drill replicas: %w", err)
	}
	var errs []error
	for _, rep := range reps {
		if !rep.Running {
			continue
		}
		if err := rep.Stop(ctx, 0); err != nil {
			errs = append(errs, fmt.Errorf("stop drill replica %s: %w", rep.VM, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove drill directory: %w", err)
	}
	return nil
}

// SaveDrill stores a drill record, drills/<plan>/<time>-<id>.json.
func SaveDrill(ctx context.Context, t targets.Target, d *report.Drill) error {
	var b strings.Builder
	if err := d.WriteJSON(&b); err != nil {
		return err
	}
	key := DrillPrefix + d.Plan + "/" + d.Started.UTC().Format("20060102T150405Z") + "-" + d.ID + ".json"
	if _, err := t.Put(ctx, key, []byte(b.String())); err != nil {
		return fmt.Errorf("write drill record: %w", err)
	}
	return nil
}

// DrillRef names a stored drill record.
type DrillRef struct {
	Key, Plan, ID string
	Started       time.Time
}

// ListDrills lists the stored drill records (of one plan, or all),
// oldest first, from their keys alone.
func ListDrills(ctx context.Context, t targets.Target, planName string) ([]DrillRef, error) {
	prefix := DrillPrefix
	if planName != "" {
		prefix += planName + "/"
	}
	var out []DrillRef
	err := t.List(ctx, prefix, func(o targets.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, DrillPrefix)
		pl, name, ok := strings.Cut(rest, "/")
		if !ok || !strings.HasSuffix(name, ".json") {
			return nil
		}
		ts, id, ok := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
		if !ok {
			return nil
		}
		at, err := time.Parse("20060102T150405Z", ts)
		if err != nil {
			return nil
		}
		out = append(out, DrillRef{Key: o.Key, Plan: pl, ID: id, Started: at})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list drills: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// LoadDrill reads a drill record.
func LoadDrill(ctx context.Context, t targets.Target, ref DrillRef) (*report.Drill, error) {
	data, _, err := t.Get(ctx, ref.Key)
	if err != nil {
		return nil, fmt.Errorf("read drill %s: %w", ref.ID, err)
	}
	d, err := report.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("drill record %s: %w", ref.Key, err)
	}
	return d, nil
}

// FindDrill finds a drill record by id or unique id prefix.
func FindDrill(ctx context.Context, t targets.Target, id string) (*report.Drill, error) {
	refs, err := ListDrills(ctx, t, "")
	if err != nil {
		return nil, err
	}
	var found []DrillRef
	for _, r := range refs {
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no drill %q in the repository (drctl drills list shows them)", id)
	case 1:
		return LoadDrill(ctx, t, found[0])
	}
	return nil, fmt.Errorf("drill id %q is ambiguous (%d drills): give more of it", id, len(found))
}

// LastDrill is the newest drill of a plan.
type LastDrill struct {
	Plan    string    `json:"plan"`
	ID      string    `json:"id"`
	Site    string    `json:"site"`
	Started time.Time `json:"started"`
	Passed  bool      `json:"passed"`
	// MaxRTOSeconds is the longest RTO of the drill's VMs.
	MaxRTOSeconds float64 `json:"max_rto_seconds"`
}

// LastDrills returns the newest drill of every plan that has one.
func LastDrills(ctx context.Context, t targets.Target) ([]LastDrill, error) {
	refs, err := ListDrills(ctx, t, "")
	if err != nil {
		return nil, err
	}
	latest := map[string]DrillRef{}
	for _, r := range refs {
		latest[r.Plan] = r // oldest first: the last one wins
	}
	var out []LastDrill
	for _, r := range latest {
		d, err := LoadDrill(ctx, t, r)
		if err != nil {
			return nil, err
		}
		ld := LastDrill{Plan: d.Plan, ID: d.ID, Site: d.Site, Started: d.Started, Passed: d.Passed}
		for _, v := range d.VMs {
			ld.MaxRTOSeconds = max(ld.MaxRTOSeconds, v.RTOSeconds)
		}
		out = append(out, ld)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Plan < out[j].Plan })
	return out, nil
}
