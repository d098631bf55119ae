package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/drctl/drctl/targets"
)

// The ETag of a local object is "<inode>-<mtime ns>-<size>" in hex.
//
// A content hash would not do: PutIfMatch must fail after any write, even
// one of identical bytes, and hashing costs a full read on every Stat and
// List. Every write here creates a new file (a new inode) and stamps its
// mtime with the writer's nanosecond clock before publishing it, so a tag
// could only repeat if a later write reused the same inode number (possible
// once the old file is gone), had the same size, and stamped the same
// nanosecond. Filesystems that store coarse timestamps (ext3 with 128-byte
// inodes, FAT) weaken this to "same second"; the usual ones (ext4, xfs,
// btrfs, tmpfs, zfs) keep nanoseconds.
func etagOf(fi fs.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.ModTime().UnixNano(), fi.Size())
}

func objectInfo(key string, fi fs.FileInfo) targets.ObjectInfo {
	return targets.ObjectInfo{Key: key, Size: fi.Size(), ETag: etagOf(fi), ModTime: fi.ModTime()}
}

func (t *Target) Put(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.write(ctx, targets.OpPut, key, data, func(tmp, final string) error {
		unlock, err := t.locks.lock(ctx, key)
		if err != nil {
			return err
		}
		defer unlock()
		return renameObject(tmp, final)
	})
}

// PutIfAbsent publishes with link(2), which fails if the name exists, so
// of any number of writers in any number of processes exactly one wins.
func (t *Target) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.write(ctx, targets.OpPutIfAbsent, key, data, func(tmp, final string) error {
		err := os.Link(tmp, final)
		if linkUnsupported(err) {
			return t.createLocked(ctx, key, tmp, final)
		}
		if errors.Is(err, fs.ErrExist) {
			return targets.ErrExists
		}
		return err
	})
}

// createLocked is PutIfAbsent for filesystems without hard links: check
// and rename under the key's lock.
func (t *Target) createLocked(ctx context.Context, key, tmp, final string) error {
	unlock, err := t.locks.lock(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Lstat(final); err == nil {
		return targets.ErrExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, final)
}

func linkUnsupported(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) ||
		errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS)
}

// PutIfMatch compares the current tag and renames under the key's lock;
// Put and Delete take the same lock, so nothing slips in between.
func (t *Target) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (targets.ObjectInfo, error) {
	return t.write(ctx, targets.OpPutIfMatch, key, data, func(tmp, final string) error {
		unlock, err := t.locks.lock(ctx, key)
		if err != nil {
			return err
		}
		defer unlock()
		fi, err := os.Lstat(final)
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), err == nil && !fi.Mode().IsRegular():
			return targets.ErrNotFound
		case err != nil:
			return err
		case etagOf(fi) != etag:
			return fmt.Errorf("%w: tag is %s, not %s", targets.ErrPrecondition, etagOf(fi), etag)
		}
		return renameObject(tmp, final)
	})
}

// renameObject replaces final with tmp, with a clear error when final is a
// directory (some key has final's key as its parent).
func renameObject(tmp, final string) error {
	err := os.Rename(tmp, final)
	if err != nil {
		if fi, serr := os.Lstat(final); serr == nil && fi.IsDir() {
			return fmt.Errorf("the key is a directory here, holding longer keys: %w", err)
		}
	}
	return err
}

// write stages data in a temporary file next to the object, then lets
// publish move it into place, and makes the result durable.
func (t *Target) write(ctx context.Context, op targets.Op, key string, data []byte,
	publish func(tmp, final string) error) (targets.ObjectInfo, error) {
	if err := t.check(ctx, op, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	final := t.path(key)
	dir := filepath.Dir(final)
	tmp, fi, err := t.writeTemp(dir, data)
	if err != nil {
		return targets.ObjectInfo{}, t.failWrite(op, key, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp) // cancelled while writing: do not publish
		return targets.ObjectInfo{}, t.failWrite(op, key, err)
	}
	err = publish(tmp, final)
	os.Remove(tmp) // gone after a rename; an extra name after a link
	if err != nil {
		return targets.ObjectInfo{}, t.failWrite(op, key, err)
	}
	if err := syncDir(dir); err != nil {
		return targets.ObjectInfo{}, t.failWrite(op, key, err)
	}
	return objectInfo(key, fi), nil
}

func (t *Target) failWrite(op targets.Op, key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s %q in %s: a prefix of the key is an object here (a file cannot be a directory): %w",
			op, key, t.dir, err)
	}
	if errors.Is(err, targets.ErrExists) || errors.Is(err, targets.ErrPrecondition) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %q in %s: %w", op, key, t.dir, err)
	}
	return t.fail(op, key, err)
}

// writeTemp writes data to a new temporary file in dir, stamps its mtime
// (part of the tag) and syncs it.
func (t *Target) writeTemp(dir string, data []byte) (string, fs.FileInfo, error) {
	if err := t.mkdirs(dir); err != nil {
		return "", nil, err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", nil, err
	}
	fi, err := func() (fs.FileInfo, error) {
		if _, err := f.Write(data); err != nil {
			return nil, err
		}
		now := time.Now()
		if err := os.Chtimes(f.Name(), now, now); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		return f.Stat()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", nil, err
	}
	return f.Name(), fi, nil
}

// mkdirs creates dir and any missing parents below the base directory, and
// syncs the parent of each directory it creates so the new entries survive
// a crash. It never creates the base directory itself.
func (t *Target) mkdirs(dir string) error {
	if dir == t.dir {
		return nil
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) {
		if err := t.mkdirs(filepath.Dir(dir)); err != nil {
			return err
		}
		err = os.Mkdir(dir, 0o700)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil
	case err != nil:
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
