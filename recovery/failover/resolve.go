package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/recovery/replica"
	"github.com/drctl/drctl/repo"
)

// Defaults for snapshots without a hardware spec (replicated from image
// files rather than from a running QEMU).
const (
	defaultCPUs      = 1
	defaultMemoryMiB = 1024
)

// resolve finds every VM's recovery point and builds its replica spec.
// All problems are reported together, and before anything changes: an
// operator under pressure should fix the plan once, not once per error.
func resolve(ctx context.Context, r *repo.Repository, p *plan.Plan, stateDir string, pins map[string]string) ([]*target, error) {
	var out []*target
	var errs []error
	for _, g := range p.Groups {
		for i := range g.VMs {
			pv := &g.VMs[i]
			tg, err := resolveVM(ctx, r, p, pv, stateDir, pins[pv.VM])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			tg.group = g.Name
			out = append(out, tg)
		}
	}
	errs = append(errs, p.CheckHost(ctx)...)
	if len(errs) > 0 {
		return nil, &PlanError{Problems: errs}
	}
	if err := alignGroups(ctx, r, p, stateDir, out, pins); err != nil {
		return nil, &PlanError{Problems: []error{err}}
	}
	return out, nil
}

// PlanError lists everything that keeps a plan from running here. It is
// returned before any fence is taken or anything is started.
type PlanError struct {
	Problems []error
}

func (e *PlanError) Error() string {
	s := "the plan cannot run, nothing was started:"
	for _, err := range e.Problems {
		s += "\n  " + err.Error()
	}
	return s
}

func (e *PlanError) Unwrap() []error { return e.Problems }

func resolveVM(ctx context.Context, r *repo.Repository, p *plan.Plan, pv *plan.VM, stateDir, pinned string) (*target, error) {
	var snap *repo.Snapshot
	if pinned != "" {
		s, err := r.FindSnapshot(ctx, pv.VM, pinned)
		if err != nil {
			return nil, fmt.Errorf("vm %s: the recovery point %s this failover pinned: %w", pv.VM, pinned, err)
		}
		snap = s
	} else {
		refs, err := r.ListSnapshots(ctx, pv.VM)
		if err != nil {
			return nil, fmt.Errorf("vm %s: list recovery points: %w", pv.VM, err)
		}
		if len(refs) == 0 {
			return nil, fmt.Errorf("vm %s: %w: the repository has no recovery point of it (check the name; `drctl snapshots` lists the VMs)", pv.VM, repo.ErrNoSnapshot)
		}
		infos := make([]plan.SnapshotInfo, len(refs))
		byID := map[string]repo.SnapshotRef{}
		for i, ref := range refs {
			infos[i] = plan.SnapshotInfo{ID: ref.ID, Time: ref.Time}
			byID[ref.ID] = ref
		}
		sel, err := pv.RecoveryPoint.Select(infos)
		if err != nil {
			return nil, fmt.Errorf("vm %s: recovery point %s: %w", pv.VM, pv.RecoveryPoint, err)
		}
		s, err := r.LoadSnapshot(ctx, byID[sel.ID])
		if err != nil {
			return nil, fmt.Errorf("vm %s: read recovery point %s: %w", pv.VM, sel.ID, err)
		}
		snap = s
	}
	spec, err := buildSpec(p, pv, snap, stateDir)
	if err != nil {
		return nil, err
	}
	return &target{pv: pv, snap: snap, spec: spec}, nil
}

// buildSpec lays the plan's overrides over the hardware recorded with the
// recovery point.
func buildSpec(p *plan.Plan, pv *plan.VM, snap *repo.Snapshot, stateDir string) (replica.Spec, error) {
	var hw repo.Hardware
	if snap.Hardware != nil {
		hw = *snap.Hardware
	}
	if hw.CPUs == 0 {
		hw.CPUs = defaultCPUs
	}
	if hw.MemoryMiB == 0 {
		hw.MemoryMiB = defaultMemoryMiB
	}
	if pv.CPUs > 0 {
		hw.CPUs = pv.CPUs
	}
	if pv.MemoryMiB > 0 {
		hw.MemoryMiB = pv.MemoryMiB
	}
	for _, o := range []struct{ dst, src *string }{{&hw.Kernel, &pv.Kernel}, {&hw.Initrd, &pv.Initrd}, {&hw.Append, &pv.Append}} {
		if *o.src != "" {
			*o.dst = *o.src
		}
	}
	var errs []error
	for _, f := range []struct{ what, path string }{{"kernel", hw.Kernel}, {"initrd", hw.Initrd}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("vm %s boots its %s directly from %s, which this site does not have (%w): copy it here or set %s: in the plan",
				pv.VM, f.what, f.path, errors.Unwrap(err), f.what))
		}
	}
	spec := replica.Spec{VM: pv.VM, Hardware: hw, Accel: p.Accel, Networks: map[string]replica.Network{}}
	for _, nic := range hw.NICs {
		n, err := p.NetworkFor(pv, nic.Network)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		spec.Networks[nic.Network] = replica.Network{Kind: n.Kind, Tap: n.Tap, Bridge: n.Bridge, Forwards: n.Forwards, Restrict: n.Restrict}
	}
	if len(snap.Disks) == 0 {
		errs = append(errs, fmt.Errorf("vm %s: recovery point %s has no disks", pv.VM, snap.ID))
	}
	for _, d := range snap.Disks {
		spec.Disks = append(spec.Disks, replica.Disk{
			Name: d.Name, Path: filepath.Join(vmDiskDir(stateDir, pv.VM), d.Name+".qcow2"), Format: "qcow2", Bus: d.Bus, Serial: d.Serial,
		})
	}
	if len(errs) > 0 {
		return spec, errors.Join(errs...)
	}
	return spec, nil
}
