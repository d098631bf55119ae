// Package local stores a repository in a directory: one file per object,
// at the object's key below the base directory.
//
// Every write lands atomically (a temporary file in the same directory,
// fsync, rename or link, fsync of the directory), so readers and a crash
// see the old object or the new one, never a torn one. Conditional writes
// are safe between processes sharing the directory: PutIfAbsent relies on
// link(2) failing when the name exists, and PutIfMatch compares and renames
// under an flock(2) lock.
//
// Names starting with a dot are the target's own: temporary files
// (.tmp-*) in each directory and the lock files in .locks/ at the top.
// Keys cannot contain them (targets.ValidateKey), and List skips them.
// Because a file and a directory cannot share a name, the keys "a" and
// "a/b" cannot both exist here; the repository layout never needs that.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/drctl/drctl/targets"
)

const tmpPrefix = ".tmp-"

// Target is a directory target. It is safe for concurrent use by many
// goroutines and processes.
type Target struct {
	dir   string
	locks *keyLocks
}

var _ targets.Target = (*Target)(nil)

// New opens the existing directory dir. A missing directory is an error
// wrapping targets.ErrNoBucket: a repository on an unmounted disk must not
// be silently recreated empty.
func New(dir string) (*Target, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open directory %s: %w: directory %s does not exist", abs, targets.ErrNoBucket, abs)
	case err != nil:
		return nil, fmt.Errorf("open directory %s: %w", abs, classify(err))
	case !fi.IsDir():
		return nil, fmt.Errorf("open directory %s: not a directory", abs)
	}
	return &Target{dir: abs, locks: newKeyLocks(filepath.Join(abs, ".locks"))}, nil
}

// Create makes dir (and its parents) if needed and opens it; it is what
// "drctl init" uses.
func Create(dir string) (*Target, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory %s: %w", dir, classify(err))
	}
	return New(dir)
}

// String is the absolute directory.
func (t *Target) String() string { return t.dir }

// Dir is the absolute base directory.
func (t *Target) Dir() string { return t.dir }

func (t *Target) path(key string) string {
	return filepath.Join(t.dir, filepath.FromSlash(key))
}

// fail wraps err with the operation and key, and maps a missing base
// directory to ErrNoBucket.
func (t *Target) fail(op targets.Op, key string, err error) error {
	if errors.Is(err, targets.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(t.dir); errors.Is(serr, fs.ErrNotExist) {
			err = fmt.Errorf("%w: directory %s does not exist", targets.ErrNoBucket, t.dir)
		}
	}
	return fmt.Errorf("%s %q in %s: %w", op, key, t.dir, classify(err))
}

// classify maps OS errors onto the targets sentinels. Local errors are
// never transient: a full or read-only disk does not heal by retrying.
func classify(err error) error {
	switch {
	case errors.Is(err, targets.ErrNotFound), errors.Is(err, targets.ErrNoBucket):
		return err
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR):
		return fmt.Errorf("%w (%v)", targets.ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", targets.ErrAccessDenied, err)
	}
	return err
}

// check validates key and ctx before any work.
func (t *Target) check(ctx context.Context, op targets.Op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", op, key, t.dir, err)
	}
	if err := targets.ValidateKey(key); err != nil {
		return fmt.Errorf("%s in %s: %w", op, t.dir, err)
	}
	return nil
}

func (t *Target) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	if err := t.check(ctx, targets.OpGet, key); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	f, info, err := t.open(key)
	if err != nil {
		return nil, targets.ObjectInfo{}, t.fail(targets.OpGet, key, err)
	}
	defer f.Close()
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, targets.ObjectInfo{}, t.fail(targets.OpGet, key, err)
	}
	return data, info, nil
}

func (t *Target) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	if err := t.check(ctx, targets.OpGetRange, key); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("%s %q in %s: negative offset %d or length %d", targets.OpGetRange, key, t.dir, off, length)
	}
	f, info, err := t.open(key)
	if err != nil {
		return nil, t.fail(targets.OpGetRange, key, err)
	}
	defer f.Close()
	if off+length > info.Size || (length > 0 && off >= info.Size) {
		return nil, fmt.Errorf("%s %q in %s: bytes %d-%d of a %d-byte object: %w",
			targets.OpGetRange, key, t.dir, off, off+length, info.Size, targets.ErrRange)
	}
	data := make([]byte, length)
	if _, err := f.ReadAt(data, off); err != nil && !(err == io.EOF && off+length == info.Size) {
		return nil, t.fail(targets.OpGetRange, key, err)
	}
	return data, nil
}

func (t *Target) Stat(ctx context.Context, key string) (targets.ObjectInfo, error) {
	if err := t.check(ctx, targets.OpStat, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	fi, err := os.Lstat(t.path(key))
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return targets.ObjectInfo{}, t.fail(targets.OpStat, key, err)
	}
	return objectInfo(key, fi), nil
}

// open opens the object file and describes it from the same descriptor,
// so the tag and size belong to the bytes that will be read.
func (t *Target) open(key string) (*os.File, targets.ObjectInfo, error) {
	f, err := os.Open(t.path(key))
	if err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, targets.ObjectInfo{}, err
	}
	return f, objectInfo(key, fi), nil
}

// Delete removes the object's file. Directories left empty stay: removing
// them would race with a writer about to create a file in them.
func (t *Target) Delete(ctx context.Context, key string) error {
	if err := t.check(ctx, targets.OpDelete, key); err != nil {
		return err
	}
	p := t.path(key)
	unlock, err := t.locks.lock(ctx, key)
	if err != nil {
		return t.fail(targets.OpDelete, key, err)
	}
	fi, err := os.Lstat(p)
	if err == nil && fi.Mode().IsRegular() {
		err = os.Remove(p)
	} else if err == nil {
		err = fs.ErrNotExist // a directory is no object
	}
	unlock()
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		if _, serr := os.Stat(t.dir); errors.Is(serr, fs.ErrNotExist) {
			return t.fail(targets.OpDelete, key, err)
		}
		return nil
	case err != nil:
		return t.fail(targets.OpDelete, key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return t.fail(targets.OpDelete, key, err)
	}
	return nil
}
