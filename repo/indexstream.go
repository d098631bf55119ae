package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// errIndexGone is what streamIndex passes for a file that vanished
// between the listing and the read.
var errIndexGone = errors.New("index file is gone")

// listIndexFiles returns the index files' keys, sorted, and their sizes.
func (r *Repository) listIndexFiles(ctx context.Context) ([]string, map[string]int64, error) {
	var keys []string
	sizes := map[string]int64{}
	if err := r.target.List(ctx, indexPrefix, func(oi targets.ObjectInfo) error {
		keys = append(keys, oi.Key)
		sizes[oi.Key] = oi.Size
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list index files: %w", err)
	}
	sort.Strings(keys)
	return keys, sizes, nil
}

// indexCache keeps decoded index files between prune's passes, up to a
// budget, so that an index that fits is read from the target once rather
// than in every pass. Index files never change, so a copy stays right.
type indexCache struct {
	mu     sync.Mutex // the stream's reader gets while its consumer puts
	budget int64
	used   int64
	files  map[string]*chunk.IndexFile
}

// decodedEntryBytes is what an index entry takes decoded.
const decodedEntryBytes = 64

func newIndexCache(budget int64) *indexCache {
	return &indexCache{budget: budget, files: map[string]*chunk.IndexFile{}}
}

func (c *indexCache) get(key string) *chunk.IndexFile {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files[key]
}

func (c *indexCache) put(key string, f *chunk.IndexFile) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files[key] != nil {
		return
	}
	cost := int64(64)
	for _, p := range f.Packs {
		cost += 64 + int64(len(p.Blobs))*decodedEntryBytes
	}
	if c.used+cost > c.budget {
		return
	}
	c.used += cost
	c.files[key] = f
}

// streamWindow bounds the bytes of the index files read ahead of the one
// being processed (one file is always allowed, whatever its size).
const streamWindow = 32 << 20

// streamIndex reads the index files keys, a few at a time, and calls fn
// for each in the order of keys, so that the work done does not depend on
// the order downloads finish in, and at most streamWindow bytes of files
// (by size, an estimate of the bytes of a file) are read ahead, whatever
// the size of the index. Files in cache are not read again; files read
// go into it while it has room. fn gets errIndexGone for a file that
// vanished and the decoding error for one that cannot be read; an error
// fn returns stops the stream.
func (r *Repository) streamIndex(ctx context.Context, keys []string, size func(key string) int64, cache *indexCache, fn func(key string, f *chunk.IndexFile, err error) error) error {
	type fetched struct {
		f      *chunk.IndexFile
		err    error // decoding or errIndexGone
		io     error // reading: stops the stream
		cached bool
	}
	ctx, cancel := context.WithCancel(ctx)
	slots := make(chan struct{}, max(r.opts.Downloads, 1))
	window := semaphore.NewWeighted(streamWindow)
	weight := func(k string) int64 { return min(max(size(k), 1), streamWindow) }
	results := make([]chan fetched, len(keys))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for i, k := range keys {
			if f := cache.get(k); f != nil {
				results[i] <- fetched{f: f, cached: true}
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			if window.Acquire(ctx, weight(k)) != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				data, _, err := r.target.Get(ctx, k)
				switch {
				case errors.Is(err, targets.ErrNotFound):
					results[i] <- fetched{err: errIndexGone}
				case err != nil:
					results[i] <- fetched{io: fmt.Errorf("read index %s: %w", k, err)}
				default:
					f, err := chunk.DecodeIndexFile(r.codec, data)
					if err != nil {
						results[i] <- fetched{err: err}
						return
					}
					results[i] <- fetched{f: &f}
				}
			}()
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i, k := range keys {
		var got fetched
		select {
		case got = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !got.cached {
			<-slots
			window.Release(weight(k))
		}
		if got.io != nil {
			return got.io
		}
		if got.f != nil && !got.cached {
			cache.put(k, got.f)
		}
		if err := fn(k, got.f, got.err); err != nil {
			return err
		}
	}
	return nil
}
