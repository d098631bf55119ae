package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/drctl/drctl/targets"
)

// DefaultLeaseTTL is how long a lease stays valid without renewal. A
// writer renews every third of it; a prune treats an older lease as left
// by a writer that died.
const DefaultLeaseTTL = 15 * time.Minute

// purposePrune marks a prune's own lease: it excludes other prunes and
// gives prune the target's clock, but blocks no sweep.
const purposePrune = "prune"

// leaseFile is the stored form of a lease (leases/<id>): plain JSON, so
// that an operator can see who holds the repository open.
type leaseFile struct {
	Version    int       `json:"version"`
	Writer     string    `json:"writer"`
	Host       string    `json:"host,omitempty"`
	PID        int       `json:"pid"`
	Purpose    string    `json:"purpose"`
	Started    time.Time `json:"started"`
	TTLSeconds float64   `json:"ttl_seconds"`
	// Condemned names the condemned records that existed before the
	// lease was taken: the holder read them before loading the index and
	// does not deduplicate against what they condemn. Any other record
	// may be newer than the holder's index, so the holder blocks its
	// sweep.
	Condemned []string `json:"condemned,omitempty"`
	// Unindexed lists packs the holder uploaded and has not indexed yet,
	// so that if it is killed, the next writer of the same writer id can
	// index them (adopt) instead of uploading their blobs again.
	Unindexed []string `json:"unindexed,omitempty"`
}

// LeaseInfo describes a lease someone holds.
type LeaseInfo struct {
	ID      string    `json:"id"`
	Writer  string    `json:"writer"`
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid"`
	Purpose string    `json:"purpose"`
	Started time.Time `json:"started"`
	// Renewed is the target's modification time of the lease object.
	Renewed    time.Time `json:"renewed"`
	TTLSeconds float64   `json:"ttl_seconds"`
}

// leaseState is a lease as a prune sees it.
type leaseState struct {
	LeaseInfo
	unindexed []string
	key       string
	condemned map[string]bool
}

func (l *leaseState) ttl() time.Duration {
	if l.TTLSeconds <= 0 {
		return DefaultLeaseTTL
	}
	return time.Duration(l.TTLSeconds * float64(time.Second))
}

// expired reports whether the lease's holder has not renewed it for
// longer than its TTL, by the target's clock: now is the modification
// time of an object the caller has just written. A lease whose age the
// target does not tell never expires.
func (l *leaseState) expired(now time.Time) bool {
	return !now.IsZero() && !l.Renewed.IsZero() && now.Sub(l.Renewed) > l.ttl()
}

// blocks reports whether the lease keeps a condemned record from being
// swept: its holder may rely on what the record condemns.
func (l *leaseState) blocks(record string) bool {
	return l.Purpose != purposePrune && !l.condemned[record]
}

// heldLease is a lease this process holds.
type heldLease struct {
	r    *Repository
	id   string
	key  string
	lf   leaseFile
	data []byte
	ttl  time.Duration

	putMu  sync.Mutex // one renewal at a time: each needs the tag the last one returned
	mu     sync.Mutex
	etag   string
	lastOK time.Time // local time when the last renewal that landed was sent
	lost   error

	stop     chan struct{}
	done     chan struct{} // closed when the renewer ends; nil if none runs
	stopOnce sync.Once
	released bool
}

// takeLease creates a lease naming the condemned records its holder will
// honour.
func (r *Repository) takeLease(ctx context.Context, purpose string, condemned []string) (*heldLease, error) {
	host, _ := os.Hostname()
	lf := leaseFile{
		Version: 1, Writer: r.opts.WriterID, Host: host, PID: os.Getpid(), Purpose: purpose,
		Started: time.Now().UTC(), TTLSeconds: r.opts.LeaseTTL.Seconds(), Condemned: condemned,
	}
	data, err := json.Marshal(lf)
	if err != nil {
		return nil, fmt.Errorf("encode lease: %w", err)
	}
	id := r.opts.WriterID + "-" + randomHex(4)
	l := &heldLease{r: r, id: id, key: leasesPrefix + id, lf: lf, data: data, ttl: r.opts.LeaseTTL, stop: make(chan struct{})}
	sent := time.Now()
	oi, err := r.target.PutIfAbsent(ctx, l.key, data)
	if err != nil {
		return nil, fmt.Errorf("take lease %s: %w", id, err)
	}
	l.etag, l.lastOK = oi.ETag, sent
	return l, nil
}

// keep renews the lease every third of its TTL until release or until
// ctx ends (then the lease expires on its own). onLost, if set, is
// called once when the lease is lost.
func (l *heldLease) keep(ctx context.Context, onLost func(error)) {
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(max(l.ttl/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := l.renew(ctx)
			if errors.Is(err, ErrLeaseLost) {
				l.r.log.Error("lease lost", "lease", l.id, "err", err)
				if onLost != nil {
					onLost(err)
				}
				return
			}
			if err != nil && ctx.Err() == nil {
				l.r.log.Warn("lease renewal failed; trying again", "lease", l.id, "err", err)
			}
		}
	}()
}

// renew rewrites the lease, so that its modification time is now. The
// write is conditional on the tag of the last one: a lease that a prune
// removed as expired is never brought back, its holder learns it is lost.
func (l *heldLease) renew(ctx context.Context) error {
	l.putMu.Lock()
	defer l.putMu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	etag, sent, err := l.put(ctx, l.data, "renew")
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.etag, l.lastOK = etag, sent
	l.mu.Unlock()
	return nil
}

// put writes data over the lease if it is still the one last written,
// and returns the new tag and when the write was sent. A lease removed or
// replaced meanwhile is lost for good. Called with putMu held.
func (l *heldLease) put(ctx context.Context, data []byte, verb string) (string, time.Time, error) {
	l.mu.Lock()
	etag := l.etag
	l.mu.Unlock()
	sent := time.Now()
	oi, err := l.r.target.PutIfMatch(ctx, l.key, data, etag)
	switch {
	case errors.Is(err, targets.ErrNotFound), errors.Is(err, targets.ErrPrecondition):
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lost = fmt.Errorf("lease %s was removed or replaced: %w", l.id, ErrLeaseLost)
		return "", sent, l.lost
	case err != nil:
		return "", sent, fmt.Errorf("%s lease %s: %w", verb, l.id, err)
	}
	return oi.ETag, sent, nil
}

// setUnindexed records in the lease the packs uploaded but not indexed
// yet. It is a renewal with new content.
func (l *heldLease) setUnindexed(ctx context.Context, packs []string) error {
	l.putMu.Lock()
	defer l.putMu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	lf := l.lf
	lf.Unindexed = packs
	data, err := json.Marshal(lf)
	if err != nil {
		return fmt.Errorf("encode lease: %w", err)
	}
	etag, sent, err := l.put(ctx, data, "update")
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.lf, l.data, l.etag, l.lastOK = lf, data, etag, sent
	l.mu.Unlock()
	return nil
}

// check says whether the lease still protects its holder. A prune sees
// it expired a TTL after the last renewal landed; the holder gives up a
// sixth of the TTL earlier, which is the time its last write (a manifest
// commit) has to land.
func (l *heldLease) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil {
		return l.lost
	}
	if since := time.Since(l.lastOK); since > l.ttl-l.ttl/6 {
		l.lost = fmt.Errorf("lease %s not renewed for %v: %w", l.id, since.Round(time.Millisecond), ErrLeaseLost)
		return l.lost
	}
	return nil
}

// release stops the renewals and deletes the lease. Only the first call
// does anything.
func (l *heldLease) release(ctx context.Context) error {
	l.stopOnce.Do(func() { close(l.stop) })
	if l.done != nil {
		<-l.done
	}
	l.putMu.Lock()
	defer l.putMu.Unlock()
	if l.released {
		return nil
	}
	l.released = true
	if err := l.r.target.Delete(ctx, l.key); err != nil {
		return fmt.Errorf("release lease %s: %w", l.id, err)
	}
	return nil
}

// listLeases reads every lease. A lease that cannot be parsed counts as
// a writer's that honours no record (it blocks every sweep until it
// expires by the default TTL).
func (r *Repository) listLeases(ctx context.Context) ([]*leaseState, error) {
	var keys []string
	if err := r.target.List(ctx, leasesPrefix, func(oi targets.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	var out []*leaseState
	for _, k := range keys {
		data, oi, err := r.target.Get(ctx, k)
		if errors.Is(err, targets.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("read lease %s: %w", k, err)
		}
		ls := &leaseState{key: k, condemned: map[string]bool{}}
		ls.ID = strings.TrimPrefix(k, leasesPrefix)
		ls.Renewed = oi.ModTime
		var lf leaseFile
		if err := json.Unmarshal(data, &lf); err != nil {
			r.log.Warn("a lease cannot be parsed; it counts as a writer's until it expires", "lease", ls.ID, "err", err)
		} else {
			ls.Writer, ls.Host, ls.PID, ls.Purpose, ls.Started, ls.TTLSeconds = lf.Writer, lf.Host, lf.PID, lf.Purpose, lf.Started, lf.TTLSeconds
			ls.unindexed = lf.Unindexed
			for _, c := range lf.Condemned {
				ls.condemned[c] = true
			}
		}
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b *leaseState) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
