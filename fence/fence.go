// Package fence keeps two copies of a VM from ever running at once (split
// brain) when the primary site is declared lost.
//
// Every VM has at most one fence record, fence/<vm>, in the repository's
// target. No record means the primary site owns the VM: whoever replicates
// it may commit. A failover writes the record, naming the recovery site as
// the owner, with a compare-and-swap (create-only for the first record,
// If-Match on its version tag after that), so of any number of concurrent
// failovers exactly one wins. From then on the primary's replicate refuses
// to commit (CheckCommit), so the recovered VM and the lost primary can
// never both produce recovery points, and the recovery point the failover
// used is pinned in the record.
//
// Heartbeats, heartbeats/<site>/<vm>, say that a site is alive and
// replicating a VM. A failover refuses while the primary's heartbeat is
// younger than the plan's lease, unless forced: a primary that is merely
// cut off from the operator may still be running its VMs.
//
// The records are small JSON objects, readable without the repository's
// key so that an operator can inspect them in an emergency with any S3
// client; they hold names and times only.
package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/drctl/drctl/targets"
)

const (
	fencePrefix     = "fence/"
	heartbeatPrefix = "heartbeats/"
	recordVersion   = 1
)

// States of a fence record.
const (
	// StateFailedOver: the primary was declared lost and the owner site
	// runs (or is bringing up) the replica.
	StateFailedOver = "failed-over"
)

// Record is the fence of one VM.
type Record struct {
	Version int    `json:"version"`
	VM      string `json:"vm"`
	// Epoch grows by one with every change of owner.
	Epoch int64 `json:"epoch"`
	// Owner is the site that owns the VM; only it may commit snapshots.
	Owner string `json:"owner"`
	// Run identifies the failover that took the VM, so that a rerun of an
	// interrupted failover recognises its own record and resumes.
	Run   string `json:"run"`
	State string `json:"state"`
	// RecoveryPoint is the snapshot the owner booted from, pinned so that
	// a rerun or another operator uses the same one.
	RecoveryPoint     string    `json:"recovery_point,omitempty"`
	RecoveryPointTime time.Time `json:"recovery_point_time,omitzero"`
	Plan              string    `json:"plan,omitempty"`
	Reason            string    `json:"reason,omitempty"`
	Host              string    `json:"host,omitempty"`
	Time              time.Time `json:"time"`
	// Forced: the primary's heartbeat was fresh and the operator forced
	// the failover.
	Forced bool `json:"forced,omitempty"`
}

// OwnedError says that another site or failover run owns the VM.
type OwnedError struct {
	Record Record
}

func (e *OwnedError) Error() string {
	r := e.Record
	return fmt.Sprintf("vm %s is owned by site %s (failover run %s, epoch %d, since %s%s) (only if that run's state directory was lost: continue it at that site with --adopt-run %s)",
		r.VM, r.Owner, r.Run, r.Epoch, r.Time.UTC().Format(time.RFC3339), pinned(r), r.Run)
}

// Unwrap makes errors.Is(err, ErrFenced) true: another site owns the VM.
func (e *OwnedError) Unwrap() error { return ErrFenced }

func pinned(r Record) string {
	if r.RecoveryPoint == "" {
		return ""
	}
	return ", recovery point " + short(r.RecoveryPoint)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// ErrFenced is wrapped by CheckCommit's and TakeOver's errors when another
// site or failover run owns the VM.
var ErrFenced = errors.New("fenced")

// FencedError is CheckCommit's refusal: the VM was failed over.
type FencedError struct {
	Site   string // the site that asked
	Record Record
}

func (e *FencedError) Error() string {
	r := e.Record
	return fmt.Sprintf("vm %s was failed over to site %s at %s (epoch %d%s): site %s no longer owns it, so this snapshot is not committed; "+
		"the replica at %s is now the VM (run `drctl status` to see it)",
		r.VM, r.Owner, r.Time.UTC().Format(time.RFC3339), r.Epoch, pinned(r), e.Site, r.Owner)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// Store reads and writes fence records and heartbeats on a target.
type Store struct {
	t   targets.Target
	now func() time.Time
}

// NewStore returns a Store on t, the repository's target.
func NewStore(t targets.Target) *Store {
	return &Store{t: t, now: time.Now}
}

func fenceKey(vm string) string { return fencePrefix + vm }

// Load returns the VM's fence record and its version tag, or nil and ""
// when the VM has none (the primary owns it).
func (s *Store) Load(ctx context.Context, vm string) (*Record, string, error) {
	data, info, err := s.t.Get(ctx, fenceKey(vm))
	if errors.Is(err, targets.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read fence of %s: %w", vm, err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, "", fmt.Errorf("read fence of %s: %s is damaged (%v): inspect it, and delete it only if no failover of %s happened", vm, fenceKey(vm), err, vm)
	}
	if r.VM != vm {
		return nil, "", fmt.Errorf("read fence of %s: %s names vm %q: the object was copied or renamed; inspect it", vm, fenceKey(vm), r.VM)
	}
	return &r, info.ETag, nil
}

// All returns every fence record, by VM name.
func (s *Store) All(ctx context.Context) (map[string]*Record, error) {
	var vms []string
	err := s.t.List(ctx, fencePrefix, func(o targets.ObjectInfo) error {
		vms = append(vms, strings.TrimPrefix(o.Key, fencePrefix))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list fences: %w", err)
	}
	out := map[string]*Record{}
	for _, vm := range vms {
		r, _, err := s.Load(ctx, vm)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[vm] = r
		}
	}
	return out, nil
}

// Claim is what a failover asks for when it takes a VM.
type Claim struct {
	Owner, Run, Plan, Reason, Host string
	// RecoveryPoint and its time are pinned in the record.
	RecoveryPoint     string
	RecoveryPointTime time.Time
	Forced            bool
}

// TakeOver makes claim.Owner the owner of vm, atomically. It returns the
// record now in force: the new one, or the existing one when it already
// belongs to claim.Run (a resumed failover keeps the recovery point it
// pinned first). When another run owns the VM, the error is an
// *OwnedError naming it. Concurrent TakeOvers of one VM: exactly one wins.
func (s *Store) TakeOver(ctx context.Context, vm string, claim Claim) (*Record, error) {
	for attempt := 0; ; attempt++ {
		cur, etag, err := s.Load(ctx, vm)
		if err != nil {
			return nil, err
		}
		if cur != nil {
			if cur.Run == claim.Run && cur.Owner == claim.Owner {
				return cur, nil
			}
			if cur.State == StateFailedOver {
				return nil, &OwnedError{Record: *cur}
			}
		}
		rec := Record{
			Version: recordVersion, VM: vm, Epoch: 1, Owner: claim.Owner, Run: claim.Run, State: StateFailedOver,
			RecoveryPoint: claim.RecoveryPoint, RecoveryPointTime: claim.RecoveryPointTime,
			Plan: claim.Plan, Reason: claim.Reason, Host: claim.Host, Time: s.now().UTC(), Forced: claim.Forced,
		}
		if cur != nil {
			rec.Epoch = cur.Epoch + 1
		}
		data, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode fence of %s: %w", vm, err)
		}
		if cur == nil {
			_, err = s.t.PutIfAbsent(ctx, fenceKey(vm), data)
		} else {
			_, err = s.t.PutIfMatch(ctx, fenceKey(vm), data, etag)
		}
		switch {
		case err == nil:
			return &rec, nil
		case errors.Is(err, targets.ErrExists), errors.Is(err, targets.ErrPrecondition), errors.Is(err, targets.ErrNotFound):
			// Someone else wrote first: read what they wrote and decide
			// again (their record normally makes this an OwnedError).
			if attempt < 5 {
				continue
			}
		}
		return nil, fmt.Errorf("write fence of %s: %w", vm, err)
	}
}

// CheckCommit returns nil when site may commit a snapshot of vm: the VM
// has no fence record (the primary owns it) or site owns it. Otherwise it
// returns a *FencedError (errors.Is ErrFenced) that says who owns it.
func (s *Store) CheckCommit(ctx context.Context, vm, site string) error {
	r, _, err := s.Load(ctx, vm)
	if err != nil {
		return fmt.Errorf("check fence before commit: %w", err)
	}
	if r == nil || r.Owner == site {
		return nil
	}
	return &FencedError{Site: site, Record: *r}
}

// Heartbeat says that Site was alive and replicating VM at Time.
type Heartbeat struct {
	Site string    `json:"site"`
	VM   string    `json:"vm"`
	Host string    `json:"host,omitempty"`
	Time time.Time `json:"time"`
}

// Age is how old the heartbeat is at now.
func (h Heartbeat) Age(now time.Time) time.Duration { return now.Sub(h.Time) }

func heartbeatKey(site, vm string) string { return heartbeatPrefix + site + "/" + vm }

// Beat records that site is alive and replicating vm now.
func (s *Store) Beat(ctx context.Context, site, vm, host string) error {
	if err := targets.ValidateKey(heartbeatKey(site, vm)); err != nil || strings.Contains(site, "/") {
		return fmt.Errorf("heartbeat: site name %q: use letters, digits, '.', '_' and '-'", site)
	}
	data, err := json.Marshal(Heartbeat{Site: site, VM: vm, Host: host, Time: s.now().UTC()})
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	if _, err := s.t.Put(ctx, heartbeatKey(site, vm), data); err != nil {
		return fmt.Errorf("write heartbeat of %s for %s: %w", site, vm, err)
	}
	return nil
}

// Heartbeats returns the heartbeats of vm from every site, newest first.
// A damaged heartbeat is skipped: it must not block a failover.
func (s *Store) Heartbeats(ctx context.Context, vm string) ([]Heartbeat, error) {
	var keys []string
	err := s.t.List(ctx, heartbeatPrefix, func(o targets.ObjectInfo) error {
		if strings.HasSuffix(o.Key, "/"+vm) {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list heartbeats: %w", err)
	}
	var hbs []Heartbeat
	for _, k := range keys {
		data, _, err := s.t.Get(ctx, k)
		if errors.Is(err, targets.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read heartbeat %s: %w", k, err)
		}
		var h Heartbeat
		if json.Unmarshal(data, &h) != nil || h.VM != vm {
			continue
		}
		hbs = append(hbs, h)
	}
	sort.Slice(hbs, func(i, j int) bool { return hbs[i].Time.After(hbs[j].Time) })
	return hbs, nil
}

// FreshPrimary returns the newest heartbeat of vm from a site other than
// self that is younger than lease, or nil: a live primary.
func (s *Store) FreshPrimary(ctx context.Context, vm, self string, lease time.Duration) (*Heartbeat, error) {
	hbs, err := s.Heartbeats(ctx, vm)
	if err != nil {
		return nil, err
	}
	now := s.now()
	for _, h := range hbs {
		if h.Site != self && h.Age(now) < lease {
			return &h, nil
		}
	}
	return nil, nil
}
