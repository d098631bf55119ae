// Package replicate takes snapshots of VM disks and stores them in a
// repository: it finds what changed since the VM's last snapshot, stores
// only that, and commits a manifest.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// diskSource is where a disk's data comes from: an image file or block
// device (scanned whole) or, later, a live VM's point-in-time view with a
// dirty bitmap (only the changed ranges).
type diskSource interface {
	// Size is the disk's size in bytes.
	Size() int64
	// Ranges lists, sorted, the ranges to read.
	Ranges(ctx context.Context) ([][2]int64, error)
	// GapsUnchanged says what lies between the ranges: false, holes (a
	// file's unallocated space); true, data unchanged since the parent
	// snapshot (a dirty bitmap's clean blocks).
	GapsUnchanged() bool
	// ReadAt fills p from offset off; reads past the end are zeros.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// Describe names the source in messages and the manifest.
	Describe() string
	Close() error
}

// fileSource is an image file or a block device, read whole except for
// the holes the file system reports.
type fileSource struct {
	f    *os.File
	path string
	size int64
}

func (s *fileSource) Size() int64         { return s.size }
func (s *fileSource) GapsUnchanged() bool { return false }
func (s *fileSource) Describe() string    { return s.path }
func (s *fileSource) Close() error        { return s.f.Close() }

func (s *fileSource) Ranges(context.Context) ([][2]int64, error) { return dataRanges(s.f, s.size) }

func (s *fileSource) ReadAt(_ context.Context, p []byte, off int64) error {
	n, err := s.f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s at %d: %w", s.path, off, err)
	}
	clear(p[n:]) // a file that shrank while being read reads as zeros
	return nil
}

// openFileSource opens an image file or block device.
func openFileSource(path string) (*fileSource, error) {
	f, size, err := openDisk(path)
	if err != nil {
		return nil, err
	}
	return &fileSource{f: f, path: path, size: size}, nil
}

// openDisk opens an image file or block device and returns its size.
func openDisk(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("open disk %s: file does not exist (check the path, or remove the disk from the VM)", path)
		}
		return nil, 0, fmt.Errorf("open disk %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat disk %s: %w", path, err)
	}
	switch {
	case fi.Mode().IsRegular():
		return f, fi.Size(), nil
	case fi.Mode()&os.ModeDevice != 0:
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("size of block device %s: %w", path, err)
		}
		return f, size, nil
	}
	f.Close()
	return nil, 0, fmt.Errorf("disk %s is neither a regular file nor a block device", path)
}

// dataRanges lists the allocated ranges of f in [0,size) with
// SEEK_DATA/SEEK_HOLE, so holes of sparse images are never read. Where the
// file system cannot tell, the whole file is one range.
func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	fd := int(f.Fd())
	var out [][2]int64
	off := int64(0)
	for off < size {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				break // only a hole remains
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return [][2]int64{{off, size}}, nil
			}
			return nil, fmt.Errorf("seek data in %s: %w", f.Name(), err)
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole in %s: %w", f.Name(), err)
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}
