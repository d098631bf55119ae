// Package memtarget is an in-memory targets.Target for fast unit tests.
// Integration tests use the real local and S3 targets.
package memtarget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/drctl/drctl/targets"
)

type object struct {
	data []byte
	etag string
	mod  time.Time
}

// Target keeps objects in a map.
type Target struct {
	mu   sync.Mutex
	objs map[string]object
}

// New makes an empty target.
func New() *Target { return &Target{objs: map[string]object{}} }

func (t *Target) String() string { return "mem:" }

func etag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func info(k string, o object) targets.ObjectInfo {
	return targets.ObjectInfo{Key: k, Size: int64(len(o.data)), ETag: o.etag, ModTime: o.mod}
}

// Get implements targets.Target.
func (t *Target) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	if err := targets.ValidateKey(key); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.objs[key]
	if !ok {
		return nil, targets.ObjectInfo{}, fmt.Errorf("get %s: %w", key, targets.ErrNotFound)
	}
	return append([]byte(nil), o.data...), info(key, o), nil
}

// GetRange implements targets.Target.
func (t *Target) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	b, _, err := t.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 || off+length > int64(len(b)) {
		return nil, fmt.Errorf("get %s [%d,+%d): outside %d bytes: %w", key, off, length, len(b), targets.ErrRange)
	}
	return b[off : off+length], nil
}

// Stat implements targets.Target.
func (t *Target) Stat(ctx context.Context, key string) (targets.ObjectInfo, error) {
	_, oi, err := t.Get(ctx, key)
	return oi, err
}

func (t *Target) put(ctx context.Context, key string, data []byte, check func(object, bool) error) (targets.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return targets.ObjectInfo{}, err
	}
	if err := targets.ValidateKey(key); err != nil {
		return targets.ObjectInfo{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.objs[key]
	if err := check(old, ok); err != nil {
		return targets.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	o := object{data: append([]byte(nil), data...), etag: etag(), mod: time.Now()}
	t.objs[key] = o
	return info(key, o), nil
}

// Put implements targets.Target.
func (t *Target) Put(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, key, data, func(object, bool) error { return nil })
}

// PutIfAbsent implements targets.Target.
func (t *Target) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, key, data, func(_ object, ok bool) error {
		if ok {
			return targets.ErrExists
		}
		return nil
	})
}

// PutIfMatch implements targets.Target.
func (t *Target) PutIfMatch(ctx context.Context, key string, data []byte, tag string) (targets.ObjectInfo, error) {
	return t.put(ctx, key, data, func(o object, ok bool) error {
		if !ok {
			return targets.ErrNotFound
		}
		if o.etag != tag {
			return targets.ErrPrecondition
		}
		return nil
	})
}

// List implements targets.Target.
func (t *Target) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	if err := targets.ValidatePrefix(prefix); err != nil {
		return err
	}
	t.mu.Lock()
	var infos []targets.ObjectInfo
	for k, o := range t.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, info(k, o))
		}
	}
	t.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, oi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements targets.Target.
func (t *Target) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := targets.ValidateKey(key); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.objs, key)
	return nil
}

// Corrupt flips one byte of an object, for tests of damage detection.
func (t *Target) Corrupt(key string, off int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.objs[key]
	if !ok || len(o.data) == 0 {
		return
	}
	o.data[off%len(o.data)] ^= 0x55
}

// Keys lists all keys.
func (t *Target) Keys() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ks []string
	for k := range t.objs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
