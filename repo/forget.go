package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// KeepPolicy says which snapshots of each VM to keep; the others are
// forgotten. The rules work like restic's:
//
//   - Last keeps the Last newest snapshots.
//   - Hourly, Daily, Weekly, Monthly and Yearly each keep the newest
//     snapshot of each of the N most recent hours (days, ISO weeks, months,
//     years) that have a snapshot. A period without snapshots does not use
//     up a slot, so "Daily: 7" keeps seven days' worth of snapshots even if
//     replication paused for a week.
//   - Within keeps every snapshot taken within that duration before the
//     VM's newest snapshot (not before now: a VM whose replication stopped
//     keeps its recent history instead of losing it while nobody looks).
//
// A count of -1 means unlimited. A snapshot is kept if any rule keeps it.
// Whatever the policy, the newest snapshot of every VM is always kept: it
// is the parent of the next incremental and the recovery point of last
// resort.
type KeepPolicy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	Within                                       time.Duration
}

// Empty reports whether the policy has no rule. Forgetting with an empty
// policy would remove everything but each VM's newest snapshot, which is
// almost certainly a mistake, so Forget refuses it.
func (p KeepPolicy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Yearly == 0 && p.Within <= 0
}

func (p KeepPolicy) String() string {
	var parts []string
	for _, r := range []struct {
		name string
		n    int
	}{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly}} {
		switch {
		case r.n < 0:
			parts = append(parts, r.name+" all")
		case r.n > 0:
			parts = append(parts, fmt.Sprintf("%s %d", r.name, r.n))
		}
	}
	if p.Within > 0 {
		parts = append(parts, "within "+p.Within.String())
	}
	if len(parts) == 0 {
		return "keep nothing"
	}
	return "keep " + strings.Join(parts, ", ")
}

// Reasons given by ApplyPolicy.
const (
	ReasonNewest = "newest snapshot of the VM (always kept)"
)

// ApplyPolicy splits snapshots into those the policy keeps and those it
// removes, per VM, and says why each kept snapshot is kept (reasons by
// snapshot id). It is a pure function: calendar periods are taken in now's
// time zone, so the caller decides where days begin (time.Now() gives the
// local zone). Both lists are ordered by VM, then oldest first.
func ApplyPolicy(snaps []SnapshotRef, p KeepPolicy, now time.Time) (keep, remove []SnapshotRef, reasons map[string][]string) {
	loc := now.Location()
	reasons = map[string][]string{}
	byVM := map[string][]SnapshotRef{}
	for _, s := range snaps {
		byVM[s.VM] = append(byVM[s.VM], s)
	}
	vms := make([]string, 0, len(byVM))
	for vm := range byVM {
		vms = append(vms, vm)
	}
	sort.Strings(vms)

	type rule struct {
		name   string
		left   int
		bucket func(t time.Time) string
		last   string
	}
	for _, vm := range vms {
		list := byVM[vm]
		// Newest first.
		sort.Slice(list, func(i, j int) bool {
			if !list[i].Time.Equal(list[j].Time) {
				return list[i].Time.After(list[j].Time)
			}
			return list[i].ID > list[j].ID
		})
		rules := []*rule{
			{name: "last", left: p.Last, bucket: nil},
			{name: "hourly", left: p.Hourly, bucket: func(t time.Time) string { return t.In(loc).Format("2006-01-02 15h") }},
			{name: "daily", left: p.Daily, bucket: func(t time.Time) string { return t.In(loc).Format("2006-01-02") }},
			{name: "weekly", left: p.Weekly, bucket: func(t time.Time) string {
				y, w := t.In(loc).ISOWeek()
				return fmt.Sprintf("%d-W%02d", y, w)
			}},
			{name: "monthly", left: p.Monthly, bucket: func(t time.Time) string { return t.In(loc).Format("2006-01") }},
			{name: "yearly", left: p.Yearly, bucket: func(t time.Time) string { return t.In(loc).Format("2006") }},
		}
		newest := list[0].Time
		var vmKeep, vmRemove []SnapshotRef
		for i, s := range list {
			var why []string
			if p.Within > 0 && newest.Sub(s.Time) <= p.Within {
				why = append(why, "within "+p.Within.String()+" of the newest")
			}
			for _, r := range rules {
				if r.left == 0 {
					continue
				}
				if r.bucket == nil {
					why = append(why, "last snapshot")
					if r.left > 0 {
						r.left--
					}
					continue
				}
				b := r.bucket(s.Time)
				if b == r.last {
					continue
				}
				r.last = b
				if r.left > 0 {
					r.left--
				}
				why = append(why, fmt.Sprintf("%s snapshot (%s)", r.name, b))
			}
			if i == 0 && len(why) == 0 {
				why = append(why, ReasonNewest)
			}
			if len(why) > 0 {
				reasons[s.ID] = why
				vmKeep = append(vmKeep, s)
			} else {
				vmRemove = append(vmRemove, s)
			}
		}
		slicesReverse(vmKeep)
		slicesReverse(vmRemove)
		keep = append(keep, vmKeep...)
		remove = append(remove, vmRemove...)
	}
	return keep, remove, reasons
}

func slicesReverse(s []SnapshotRef) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// ForgetResult says what Forget kept and removed.
type ForgetResult struct {
	DryRun bool          `json:"dry_run"`
	Policy string        `json:"policy"`
	Keep   []SnapshotRef `json:"keep"`
	Remove []SnapshotRef `json:"remove"`
	// Reasons says, by snapshot id, why each kept snapshot is kept.
	Reasons map[string][]string `json:"reasons"`
	// Removed counts the manifests deleted (0 in a dry run).
	Removed int `json:"removed"`
}

// Forget applies a keep policy to the snapshots of vm (all VMs when vm is
// "") and deletes the manifests of the snapshots it does not keep. The
// data they referenced stays until prune. The newest snapshot of each VM
// is never removed. An empty policy is refused.
func (r *Repository) Forget(ctx context.Context, vm string, p KeepPolicy, dryRun bool) (ForgetResult, error) {
	res := ForgetResult{DryRun: dryRun, Policy: p.String(), Keep: []SnapshotRef{}, Remove: []SnapshotRef{}, Reasons: map[string][]string{}}
	if p.Empty() {
		return res, errors.New("forget: the keep policy is empty, which would remove every snapshot but the newest of each VM; give at least one keep rule")
	}
	refs, err := r.ListSnapshots(ctx, vm)
	if err != nil {
		return res, err
	}
	keep, remove, reasons := ApplyPolicy(refs, p, time.Now())
	if keep != nil {
		res.Keep = keep
	}
	if remove != nil {
		res.Remove = remove
	}
	res.Reasons = reasons
	if dryRun {
		return res, nil
	}
	for _, ref := range remove {
		if err := r.DeleteSnapshot(ctx, ref); err != nil {
			return res, fmt.Errorf("%w (%d of %d snapshots forgotten)", err, res.Removed, len(remove))
		}
		res.Removed++
	}
	return res, nil
}
