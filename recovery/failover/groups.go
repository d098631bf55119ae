package failover

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/repo"
)

// alignGroups keeps the members of a consistency group together. VMs
// snapshotted as a group (replicate --group) share one instant, but
// their manifests are committed one by one, so a group run that failed
// part way leaves some members with a newer snapshot than others. For
// the VMs whose plan entry says "latest" and whose latest snapshot
// belongs to a group, this picks the newest instant at which every such
// member of the plan has a snapshot of that same group, so that the
// application and its database come back from one instant. Pinned
// points (a resumed failover) and explicit ids or times are left alone.
func alignGroups(ctx context.Context, r *repo.Repository, p *plan.Plan, stateDir string, tgs []*target, pinned map[string]string) error {
	byGroup := map[string][]*target{}
	for _, tg := range tgs {
		rp := tg.pv.RecoveryPoint
		latest := rp.Latest || (rp.ID == "" && rp.At.IsZero())
		if pinned[tg.pv.VM] != "" || !latest {
			continue
		}
		if g := tagValue(tg.snap.Tags, "group"); g != "" {
			byGroup[g] = append(byGroup[g], tg)
		}
	}
	for g, members := range byGroup {
		if len(members) < 2 {
			continue
		}
		// Instants at which each member has a snapshot.
		count := map[time.Time]int{}
		refsAt := map[string]map[time.Time]repo.SnapshotRef{}
		for _, tg := range members {
			refs, err := r.ListSnapshots(ctx, tg.pv.VM)
			if err != nil {
				return fmt.Errorf("vm %s: list recovery points: %w", tg.pv.VM, err)
			}
			refsAt[tg.pv.VM] = map[time.Time]repo.SnapshotRef{}
			for _, ref := range refs {
				refsAt[tg.pv.VM][ref.Time] = ref
				count[ref.Time]++
			}
		}
		var common []time.Time
		for t, n := range count {
			if n == len(members) {
				common = append(common, t)
			}
		}
		sort.Slice(common, func(i, j int) bool { return common[i].After(common[j]) })
	instants:
		for _, t := range common {
			snaps := make([]*repo.Snapshot, len(members))
			id := ""
			for i, tg := range members {
				s, err := r.LoadSnapshot(ctx, refsAt[tg.pv.VM][t])
				if err != nil {
					return fmt.Errorf("vm %s: read recovery point: %w", tg.pv.VM, err)
				}
				gid := tagValue(s.Tags, "group-id")
				if tagValue(s.Tags, "group") != g || gid == "" || (id != "" && gid != id) {
					continue instants // same time by chance, not one group run
				}
				id, snaps[i] = gid, s
			}
			for i, tg := range members {
				if snaps[i].ID == tg.snap.ID {
					continue
				}
				spec, err := buildSpec(p, tg.pv, snaps[i], stateDir)
				if err != nil {
					return err
				}
				tg.snap, tg.spec = snaps[i], spec
			}
			break
		}
	}
	return nil
}

func tagValue(tags []string, key string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, key+"="); ok {
			return v
		}
	}
	return ""
}
