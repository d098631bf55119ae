package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/internal/units"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

type replicateFlags struct {
	vm          string
	group       string
	qmp         string
	qga         string
	workDir     string
	firmware    string
	pause       bool
	disks       []string
	allowShrink bool
	tags        []string
}

func (a *app) replicateCommand() *cobra.Command {
	var fl replicateFlags
	cmd := &cobra.Command{
		Use:   "replicate",
		Short: "Take a snapshot of a VM's disks and store it",
		Long: `Replicate all disks of one VM as one snapshot (recovery point). The first
snapshot stores everything allocated; later ones store only what changed since
the VM's latest snapshot. Disks come from --disk or from the VM's entry in
drctl.yaml. A disk given as NAME=PATH is stored under NAME, otherwise under the
file's base name.

With --qmp SOCKET, drctl snapshots a running QEMU VM: all its disks at one
instant (crash-consistent), then reads only the blocks its dirty bitmaps mark as
changed since the last snapshot. Start QEMU with an extra -qmp socket for drctl.

Image files given with --disk are read while they may change: stop or pause the
VM (or snapshot its storage) first for a consistent recovery point.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runReplicate(cmd.Context(), fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.vm, "vm", "", "name of the VM (required, unless --group)")
	f.StringVar(&fl.group, "group", "", "snapshot every VM of this consistency group (group: in drctl.yaml) at one instant")
	f.StringVar(&fl.qmp, "qmp", "", "QMP socket of a running QEMU VM reserved for drctl: snapshot all its disks at one instant, reading only changed blocks")
	f.StringVar(&fl.qga, "qga", "", "host socket of the VM's guest agent: freeze the guest's file systems for the snapshot (app-consistent)")
	f.BoolVar(&fl.pause, "pause-when-fenced", false, "pause the running VM if it was failed over to another site (needs --qmp)")
	f.StringVar(&fl.firmware, "firmware", "", "record the VM's firmware (bios or uefi) when QEMU cannot tell; default: detect")
	f.StringVar(&fl.workDir, "work-dir", "", "where a live snapshot keeps its scratch overlays and NBD socket (default: the temp dir)")
	f.StringArrayVar(&fl.disks, "disk", nil, "disk to replicate: PATH or NAME=PATH (repeatable; default: the VM's disks in drctl.yaml)")
	f.BoolVar(&fl.allowShrink, "allow-shrink", false, "accept a disk smaller than in the last snapshot")
	f.StringArrayVar(&fl.tags, "tag", nil, "tag the snapshot (repeatable)")
	return cmd
}

func (a *app) runReplicate(ctx context.Context, fl replicateFlags) error {
	if fl.group != "" {
		return a.runGroup(ctx, fl)
	}
	if fl.vm == "" {
		return usageError{fmt.Errorf("--vm is required (or --group)")}
	}
	var disks []replicate.Disk
	for _, d := range fl.disks {
		disks = append(disks, parseDiskFlag(d))
	}
	if fl.qmp != "" && len(disks) > 0 {
		return usageError{fmt.Errorf("--qmp takes every disk of the VM: do not combine it with --disk")}
	}
	if len(disks) == 0 && fl.qmp == "" {
		vm, err := a.cfg.VM(fl.vm)
		if err != nil {
			return usageError{fmt.Errorf("%w (or pass --disk)", err)}
		}
		for _, d := range vm.Disks {
			disks = append(disks, replicate.Disk{Name: d.Name, Path: d.Path})
		}
		fl.qmp = vm.QMP
		if fl.qga == "" {
			fl.qga = vm.QGA
		}
		if fl.firmware == "" {
			fl.firmware = vm.Firmware
		}
		fl.pause = fl.pause || vm.PauseWhenFenced
		if a.repoFlag == "" && vm.Repository != "" {
			a.repoFlag = vm.Repository
		}
	}
	site, err := a.site()
	if err != nil {
		return err
	}
	r, err := a.openRepo(ctx)
	if err != nil {
		return err
	}
	defer a.printRequests()
	counters := &replicate.Counters{}
	host, _ := os.Hostname()
	fences := fence.NewStore(r.Target())
	a.heartbeat(ctx, fences, site, host, fl.vm)
	stop := a.startProgress(ctx, "replicate "+fl.vm, func() progressState {
		return progressState{
			total: counters.BytesTotal.Load(), done: counters.BytesScanned.Load(),
			fields: []progressField{
				{"read", counters.BytesRead.Load()},
				{"changed", counters.BytesChanged.Load()},
				{"uploaded", a.uploadedBytes()},
			},
		}
	})
	ropts := replicate.Options{
		VM: fl.vm, Disks: disks, AllowShrink: fl.allowShrink, Host: host, Tags: fl.tags,
		Counters: counters, Logger: a.log, Fence: fences, Site: site,
	}
	if fl.qmp != "" {
		ropts.QEMU = &replicate.QEMU{QMPSocket: fl.qmp, QGASocket: fl.qga, WorkDir: fl.workDir}
	}
	switch fl.firmware {
	case "":
	case "bios", "uefi":
		ropts.Hardware = &repo.Hardware{Firmware: fl.firmware}
	default:
		return usageError{fmt.Errorf("--firmware %q: use bios or uefi", fl.firmware)}
	}
	snap, err := replicate.Run(ctx, r, ropts)
	stop()
	if err != nil {
		if errors.Is(err, fence.ErrFenced) && fl.pause && fl.qmp != "" {
			replicate.PauseFenced(fl.vm, fl.qmp, a.log)
		}
		return err
	}
	st := snap.Stats
	if a.jsonOut {
		sum := snapshotSummary(snap)
		sum["bytes_total"] = counters.BytesTotal.Load()
		sum["bytes_uploaded"] = a.uploadedBytes()
		sum["objects_written"] = a.objectsWritten()
		sum["requests"] = a.requestCount()
		return a.printJSON(sum)
	}
	kind := "full"
	if snap.Parent != "" {
		kind = "incremental against " + snap.Parent[:8]
	}
	a.printf("snapshot %s of %s saved (%s, %s)\n", snap.ID[:8], snap.VM, kind, snap.Consistency)
	for _, d := range snap.Disks {
		a.printf("  disk %-20s %10s, %10s allocated, changes by %s\n", d.Name, units.Bytes(d.Size), units.Bytes(d.Allocated), d.ChangeSource)
		if d.Note != "" {
			a.printf("    %s\n", d.Note)
		}
	}
	a.printf("read %s, changed %s, new %s, stored %s, uploaded %s in %d requests, %s\n",
		units.Bytes(st.BytesRead), units.Bytes(st.BytesChanged), units.Bytes(st.BytesNew), units.Bytes(st.BytesStored),
		units.Bytes(a.uploadedBytes()), a.requestCount(), time.Duration(st.DurationSecs*float64(time.Second)).Round(time.Millisecond))
	return nil
}

// heartbeat tells the recovery side that this site is alive and
// replicating vm. A failed heartbeat is only logged: replication matters
// more, and a missing heartbeat errs on the safe side (failover is not
// blocked by a site that cannot reach the target anyway).
func (a *app) heartbeat(ctx context.Context, fences *fence.Store, site, host, vm string) {
	if err := fences.Beat(ctx, site, vm, host); err != nil {
		a.log.Warn("could not write the heartbeat", "vm", vm, "site", site, "err", err)
	}
}

// parseDiskFlag reads PATH or NAME=PATH.
func parseDiskFlag(s string) replicate.Disk {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return replicate.Disk{Name: s[:i], Path: s[i+1:]}
		}
		if s[i] == '/' {
			break
		}
	}
	return replicate.Disk{Path: s}
}

// runGroup snapshots a consistency group from the config.
func (a *app) runGroup(ctx context.Context, fl replicateFlags) error {
	if fl.vm != "" || len(fl.disks) > 0 || fl.qmp != "" {
		return usageError{fmt.Errorf("--group takes its VMs from drctl.yaml: do not combine it with --vm, --disk or --qmp")}
	}
	vms := a.cfg.GroupVMs(fl.group)
	if len(vms) == 0 {
		return usageError{fmt.Errorf("no VM in the config has group: %s", fl.group)}
	}
	if a.repoFlag == "" && vms[0].Repository != "" {
		a.repoFlag = vms[0].Repository
	}
	site, err := a.site()
	if err != nil {
		return err
	}
	r, err := a.openRepo(ctx)
	if err != nil {
		return err
	}
	defer a.printRequests()
	host, _ := os.Hostname()
	fences := fence.NewStore(r.Target())
	var members []replicate.Options
	for _, vm := range vms {
		a.heartbeat(ctx, fences, site, host, vm.Name)
		m := replicate.Options{VM: vm.Name, Host: host, Tags: fl.tags, Logger: a.log, Fence: fences, Site: site,
			QEMU: &replicate.QEMU{QMPSocket: vm.QMP, WorkDir: fl.workDir}}
		if vm.Firmware != "" {
			m.Hardware = &repo.Hardware{Firmware: vm.Firmware}
		}
		members = append(members, m)
	}
	snaps, err := replicate.RunGroup(ctx, r, fl.group, members)
	if errors.Is(err, fence.ErrFenced) {
		for _, vm := range vms {
			if vm.PauseWhenFenced {
				replicate.PauseFenced(vm.Name, vm.QMP, a.log)
			}
		}
	}
	for _, s := range snaps {
		if a.jsonOut {
			// Target requests are shared by the group, so they are not
			// reported per VM.
			sum := snapshotSummary(s)
			sum["group"] = fl.group
			if perr := a.printJSON(sum); perr != nil {
				return perr
			}
			continue
		}
		a.printf("snapshot %s of %s saved (group %s, %s): read %s, stored %s\n", s.ID[:8], s.VM, fl.group, s.Consistency,
			units.Bytes(s.Stats.BytesRead), units.Bytes(s.Stats.BytesStored))
	}
	return err
}

// snapshotSummary is the --json summary of one committed snapshot.
func snapshotSummary(s *repo.Snapshot) map[string]any {
	st := s.Stats
	return map[string]any{
		"message_type":     "summary",
		"snapshot_id":      s.ID,
		"vm":               s.VM,
		"parent":           s.Parent,
		"time":             s.Time,
		"consistency":      s.Consistency,
		"disks":            len(s.Disks),
		"bytes_read":       st.BytesRead,
		"bytes_changed":    st.BytesChanged,
		"bytes_new":        st.BytesNew,
		"bytes_stored":     st.BytesStored,
		"blobs_new":        st.BlobsNew,
		"duration_seconds": st.DurationSecs,
	}
}
