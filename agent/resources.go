package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/drctl/drctl/repo"
)

// repoCache keeps repositories open between runs: opening one derives the
// key from the password (argon2id, a fraction of a second and 64 MiB),
// which a daemon should pay once.
type repoCache struct {
	open Opener
	mu   sync.Mutex
	m    map[string]*repoEntry
}

type repoEntry struct {
	once sync.Mutex
	r    *repo.Repository
}

func newRepoCache(open Opener) *repoCache {
	return &repoCache{open: open, m: map[string]*repoEntry{}}
}

// get returns the open repository, opening it on first use. A failure is
// not cached: the target may be back on the next run.
func (c *repoCache) get(ctx context.Context, name string) (*repo.Repository, error) {
	c.mu.Lock()
	e := c.m[name]
	if e == nil {
		e = &repoEntry{}
		c.m[name] = e
	}
	c.mu.Unlock()
	e.once.Lock()
	defer e.once.Unlock()
	if e.r != nil {
		return e.r, nil
	}
	r, err := c.open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", repoLabel(name), err)
	}
	e.r = r
	return r, nil
}

func (c *repoCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = map[string]*repoEntry{}
}

// slots bound the jobs running at once, on the host and per repository.
type slots struct {
	host    chan struct{}
	perRepo int
	mu      sync.Mutex
	repos   map[string]chan struct{}
}

func newSlots(host, perRepo int) *slots {
	return &slots{host: make(chan struct{}, host), perRepo: perRepo, repos: map[string]chan struct{}{}}
}

// acquire waits for a repository slot, then a host slot.
func (s *slots) acquire(ctx context.Context, repository string) (func(), error) {
	s.mu.Lock()
	rc := s.repos[repository]
	if rc == nil {
		rc = make(chan struct{}, s.perRepo)
		s.repos[repository] = rc
	}
	s.mu.Unlock()
	select {
	case rc <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case s.host <- struct{}{}:
	case <-ctx.Done():
		<-rc
		return nil, ctx.Err()
	}
	return func() { <-s.host; <-rc }, nil
}
