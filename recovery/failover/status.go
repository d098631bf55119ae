package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// Planned is one VM of a checked plan: what a failover would use.
type Planned struct {
	VM           string    `json:"vm"`
	Group        string    `json:"group"`
	Snapshot     string    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time"`
	Consistency  string    `json:"consistency"`
	Disks        []string  `json:"disks"`
	CPUs         int       `json:"cpus"`
	MemoryMiB    int       `json:"memory_mib"`
	Networks     []string  `json:"networks"` // "MAC model: source -> recovery network"
	Checks       []string  `json:"checks"`
}

// Check validates a plan against the repository and this host, as a
// failover would before it starts anything, and says what each VM would
// use. It changes nothing.
func Check(ctx context.Context, r *repo.Repository, p *plan.Plan, stateDir string) ([]Planned, error) {
	tgs, err := resolve(ctx, r, p, stateDir, nil)
	if err != nil {
		return nil, err
	}
	var out []Planned
	for _, tg := range tgs {
		pl := Planned{VM: tg.pv.VM, Group: tg.group, Snapshot: tg.snap.ID, SnapshotTime: tg.snap.Time, Consistency: tg.snap.Consistency,
			CPUs: tg.spec.Hardware.CPUs, MemoryMiB: tg.spec.Hardware.MemoryMiB}
		for _, d := range tg.snap.Disks {
			pl.Disks = append(pl.Disks, d.Name)
		}
		for _, nic := range tg.spec.Hardware.NICs {
			pl.Networks = append(pl.Networks, fmt.Sprintf("%s %s: %s -> %s", nic.MAC, nic.Model, nic.Network, tg.pv.Networks[nic.Network]))
		}
		for _, c := range tg.pv.Health {
			pl.Checks = append(pl.Checks, c.Name)
		}
		out = append(out, pl)
	}
	return out, nil
}

// VMStatus is one VM as seen from this site.
type VMStatus struct {
	VM string `json:"vm"`
	// Owner is the site owning the VM ("" = the primary, no fence), with
	// the fence's epoch.
	Owner         string    `json:"owner"`
	Epoch         int64     `json:"epoch"`
	Pinned        string    `json:"pinned_recovery_point,omitempty"`
	Latest        string    `json:"latest_snapshot,omitempty"`
	LatestTime    time.Time `json:"latest_time,omitzero"`
	RPOSeconds    float64   `json:"rpo_seconds,omitempty"` // age of the latest recovery point
	Heartbeat     time.Time `json:"heartbeat,omitzero"`
	HeartbeatSite string    `json:"heartbeat_site,omitempty"`
	// Replica at this site, if there is one.
	Replica       bool   `json:"replica_running"`
	ReplicaPID    int    `json:"replica_pid,omitempty"`
	ReplicaStatus string `json:"replica_status,omitempty"`
	// Health is the VM's result in this site's latest failover
	// (healthy, unhealthy, failed, skipped), with its time.
	Health     string    `json:"health,omitempty"`
	HealthTime time.Time `json:"health_time,omitzero"`
	HealthRun  string    `json:"health_run,omitempty"`
}

// Status reports every VM of the repository (and every fenced one):
// owner, latest recovery point and its age, the newest heartbeat, any
// replica at this site and its result in this site's latest failover.
func Status(ctx context.Context, r *repo.Repository, site, stateDir string, now time.Time) ([]VMStatus, error) {
	vms := map[string]*VMStatus{}
	get := func(vm string) *VMStatus {
		if vms[vm] == nil {
			vms[vm] = &VMStatus{VM: vm}
		}
		return vms[vm]
	}
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	for _, ref := range refs {
		s := get(ref.VM)
		if ref.Time.After(s.LatestTime) {
			s.Latest, s.LatestTime = ref.ID, ref.Time
			s.RPOSeconds = now.Sub(ref.Time).Seconds()
		}
	}
	fences := fence.NewStore(r.Target())
	fenced, err := fences.All(ctx)
	if err != nil {
		return nil, err
	}
	for vm, rec := range fenced {
		s := get(vm)
		s.Owner, s.Epoch, s.Pinned = rec.Owner, rec.Epoch, rec.RecoveryPoint
	}
	for vm, s := range vms {
		hbs, err := fences.Heartbeats(ctx, vm)
		if err != nil {
			return nil, err
		}
		if len(hbs) > 0 {
			s.Heartbeat, s.HeartbeatSite = hbs[0].Time, hbs[0].Site
		}
	}
	if stateDir != "" {
		site := &replica.Site{Dir: filepath.Join(stateDir, "replicas")}
		reps, err := site.List(ctx)
		if err != nil && !errors.Is(err, replica.ErrNotRunning) {
			return nil, err
		}
		for _, rep := range reps {
			if !rep.Running {
				continue
			}
			s := get(rep.VM)
			s.Replica, s.ReplicaPID, s.ReplicaStatus = true, rep.PID, rep.Status
		}
	}
	recs, err := Records(ctx, r.Target())
	if err != nil {
		return nil, err
	}
	for _, rec := range recs { // oldest first: the latest wins
		if rec.Site != site {
			continue
		}
		for _, v := range rec.VMs {
			s := get(v.VM)
			s.Health, s.HealthTime, s.HealthRun = v.Status, rec.Finished, rec.Run
		}
	}
	out := make([]VMStatus, 0, len(vms))
	for _, s := range vms {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VM < out[j].VM })
	return out, nil
}

// Records returns the failover records in the repository, oldest first.
func Records(ctx context.Context, t targets.Target) ([]Result, error) {
	var keys []string
	if err := t.List(ctx, RecordPrefix, func(o targets.ObjectInfo) error {
		if strings.HasSuffix(o.Key, ".json") {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list failover records: %w", err)
	}
	sort.Strings(keys)
	var out []Result
	for _, k := range keys {
		data, _, err := t.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("read failover record %s: %w", k, err)
		}
		var res Result
		if err := json.Unmarshal(data, &res); err != nil {
			return nil, fmt.Errorf("failover record %s is damaged: %w", k, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// StopReplicas shuts down the plan's replicas at this site: an ACPI
// power-down first, then a hard stop after grace.
func StopReplicas(ctx context.Context, p *plan.Plan, stateDir string, grace time.Duration) ([]string, error) {
	site := &replica.Site{Dir: filepath.Join(stateDir, "replicas")}
	var stopped []string
	var errs []error
	for _, pv := range p.VMs() {
		rep, err := site.Find(ctx, pv.VM)
		if errors.Is(err, replica.ErrNotRunning) {
			continue
		}
		if err == nil {
			err = rep.Stop(ctx, grace)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stop replica %s: %w", pv.VM, err))
			continue
		}
		stopped = append(stopped, pv.VM)
	}
	return stopped, errors.Join(errs...)
}
