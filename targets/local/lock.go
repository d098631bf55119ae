package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockStripes is the number of lock files. Keys share them by hash: a lock
// file per key would leave one file behind for every object ever written,
// and writes to unrelated keys that share a stripe only wait for one
// rename.
const lockStripes = 64

// keyLocks serialises writes of one key between goroutines (a semaphore
// per stripe, which a context can abandon) and between processes (flock on
// the stripe's file in .locks/).
type keyLocks struct {
	dir  string
	sems [lockStripes]chan struct{}
}

func newKeyLocks(dir string) *keyLocks {
	l := &keyLocks{dir: dir}
	for i := range l.sems {
		l.sems[i] = make(chan struct{}, 1)
	}
	return l
}

// lock takes the lock of key's stripe and returns its release.
func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	i := h.Sum32() % lockStripes
	select {
	case l.sems[i] <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := l.flock(ctx, fmt.Sprintf("%02x", i))
	if err != nil {
		<-l.sems[i]
		return nil, err
	}
	return func() {
		f.Close() // releases the flock
		<-l.sems[i]
	}, nil
}

// flock opens the named lock file and locks it exclusively. It polls
// rather than blocks, so a cancelled ctx is noticed while another process
// holds the lock.
func (l *keyLocks) flock(ctx context.Context, name string) (*os.File, error) {
	p := filepath.Join(l.dir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(l.dir, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	wait := 100 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
}
