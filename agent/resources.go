package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/repo"
)

// repoCache keeps repositories open between runs: opening one derives the
// key from the password (argon2id, a fraction of a second and 64 MiB),
// which a daemon should pay once. Entries are keyed by every setting of
// the repository, so a reload that changes its URL, password or
// credentials opens it afresh, while a run still going under the old
// config keeps the repository it opened.
type repoCache struct {
	open Opener
	mu   sync.Mutex
	m    map[repoKey]*repoEntry
}

type repoEntry struct {
	once sync.Mutex
	r    *repo.Repository
}

// repoKey is what identifies an open repository: all its settings.
type repoKey struct {
	name, url, password, accessKey, secretKey, region, lockMode string
	lockDays                                                    int
}

func keyOf(rc config.Repository) repoKey {
	k := repoKey{name: rc.Name, url: rc.URL, password: rc.Password, accessKey: rc.AccessKeyID,
		secretKey: rc.SecretAccessKey, region: rc.Region}
	if rc.ObjectLock != nil {
		k.lockMode, k.lockDays = rc.ObjectLock.Mode, rc.ObjectLock.Days
	}
	return k
}

func newRepoCache(open Opener) *repoCache {
	return &repoCache{open: open, m: map[repoKey]*repoEntry{}}
}

// get returns the open repository, opening it on first use. A failure is
// not cached: the target may be back on the next run.
func (c *repoCache) get(ctx context.Context, rc config.Repository) (*repo.Repository, error) {
	k := keyOf(rc)
	c.mu.Lock()
	e := c.m[k]
	if e == nil {
		e = &repoEntry{}
		c.m[k] = e
	}
	c.mu.Unlock()
	e.once.Lock()
	defer e.once.Unlock()
	if e.r != nil {
		return e.r, nil
	}
	r, err := c.open(ctx, rc)
	if err != nil {
		label := rc.Name
		if label == "" {
			label = rc.URL
		}
		return nil, fmt.Errorf("open repository %s: %w", label, err)
	}
	e.r = r
	return r, nil
}

// keep drops the repositories a new config no longer uses as they were:
// their keys and caches are garbage once the runs holding them end.
func (c *repoCache) keep(resolved map[string]config.Repository) {
	live := make(map[repoKey]bool, len(resolved))
	for _, rc := range resolved {
		live[keyOf(rc)] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !live[k] {
			delete(c.m, k)
		}
	}
}

func (c *repoCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[repoKey]*repoEntry{}
}

// slots bound the jobs running at once, on the host and per repository.
// The limits can change under running jobs (a reload): a lower limit
// holds new jobs back until enough running ones end.
type slots struct {
	mu      sync.Mutex
	host    int
	perRepo int
	running int
	byRepo  map[string]int
	// wake is closed, and replaced, whenever a slot frees or the limits
	// change, so waiters look again.
	wake chan struct{}
}

func newSlots(host, perRepo int) *slots {
	return &slots{host: host, perRepo: perRepo, byRepo: map[string]int{}, wake: make(chan struct{})}
}

// resize sets new limits.
func (s *slots) resize(host, perRepo int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.host, s.perRepo = host, perRepo
	s.wakeLocked()
}

func (s *slots) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// acquire waits for a slot on the host and in the repository, taking both
// at once (a job waiting for the host holds no repository slot).
func (s *slots) acquire(ctx context.Context, repository string) (func(), error) {
	for {
		s.mu.Lock()
		if s.running < s.host && s.byRepo[repository] < s.perRepo {
			s.running++
			s.byRepo[repository]++
			s.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { s.release(repository) }) }, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *slots) release(repository string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if s.byRepo[repository]--; s.byRepo[repository] <= 0 {
		delete(s.byRepo, repository)
	}
	s.wakeLocked()
}
