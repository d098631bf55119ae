package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	blockSize  = 4096    // the unit modify changes, and the image size granule
	regionSize = 1 << 20 // the unit the synthetic layout is planned in
)

// imageSpec says which image to build.
type imageSpec struct {
	Kind string // "synthetic" or "ext4"
	Size int64
	Seed uint64
}

func (s imageSpec) validate() error {
	if s.Kind != "synthetic" && s.Kind != "ext4" {
		return fmt.Errorf("unknown image kind %q: use synthetic or ext4", s.Kind)
	}
	if s.Size <= 0 || s.Size%blockSize != 0 {
		return fmt.Errorf("image size %d is not a positive multiple of %d", s.Size, blockSize)
	}
	return nil
}

// cacheName is the file name under which compare caches this image.
func (s imageSpec) cacheName() string {
	return fmt.Sprintf("%s-%dM-seed%d.img", s.Kind, s.Size>>20, s.Seed)
}

// makeImage builds the image at out, atomically: out appears only when
// complete, so an interrupted build never leaves a truncated cache entry.
func makeImage(ctx context.Context, spec imageSpec, out string) error {
	if err := spec.validate(); err != nil {
		return err
	}
	start := time.Now()
	tmp := out + ".tmp"
	_ = os.Remove(tmp)
	var err error
	if spec.Kind == "ext4" {
		err = makeExt4(ctx, spec, tmp)
	} else {
		err = makeSynthetic(spec, tmp)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename image into place: %w", err)
	}
	slog.Debug("image built", "path", out, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// makeSynthetic writes a sparse image whose 1 MiB regions are, by a
// seeded draw: holes (30%), random data (25%), text (25%), copies of an
// earlier region (10%, so that dedup within the image matters) and zero
// regions with scattered random 4 KiB blocks (10%).
func makeSynthetic(spec imageSpec, path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	if err := f.Truncate(spec.Size); err != nil {
		f.Close()
		return fmt.Errorf("size image: %w", err)
	}
	if err := fillSynthetic(f, spec.Size, newRNG("image", spec.Seed)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close image: %w", err)
	}
	return nil
}

func fillSynthetic(f *os.File, size int64, r *rng) error {
	buf := make([]byte, regionSize)
	var data []int64 // offsets of regions written so far
	for off := int64(0); off < size; off += regionSize {
		b := buf[:min(regionSize, size-off)]
		switch p := r.uint64n(100); {
		case p < 30:
			continue // hole
		case p < 55:
			r.read(b)
		case p < 80:
			fillText(b, r)
		case p < 90 && len(data) > 0:
			if _, err := f.ReadAt(b, data[r.uint64n(uint64(len(data)))]); err != nil {
				return fmt.Errorf("read region to copy: %w", err)
			}
		default:
			scatterBlocks(b, r)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return fmt.Errorf("write image region at %d: %w", off, err)
		}
		data = append(data, off)
	}
	return nil
}

var words = strings.Fields(`the a of to and in disk block snapshot replica
	restore repository chunk extent virtual machine kernel page cache error
	log info warn debug request response config service user data file
	root var lib etc usr bin share local tmp home backup offsite site
	primary recovery failover drill network bridge 0 1 2 3 4 5 6 7 8 9`)

// fillText fills b with seeded pseudo-text: compressible, not repetitive.
func fillText(b []byte, r *rng) {
	i := 0
	for i < len(b) {
		i += copy(b[i:], words[r.uint64n(uint64(len(words)))])
		if i < len(b) {
			b[i] = ' '
			if r.uint64n(12) == 0 {
				b[i] = '\n'
			}
			i++
		}
	}
}

// scatterBlocks zeroes b and fills about a quarter of its 4 KiB blocks
// with random bytes.
func scatterBlocks(b []byte, r *rng) {
	clear(b)
	for i := 0; i+blockSize <= len(b); i += blockSize {
		if r.uint64n(4) == 0 {
			r.read(b[i : i+blockSize])
		}
	}
}

// imageInfo is what a report says about an image.
type imageInfo struct {
	Size      int64 // logical size
	Allocated int64 // bytes of disk allocated (holes excluded)
}

func statImage(path string) (imageInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return imageInfo{}, fmt.Errorf("stat image: %w", err)
	}
	info := imageInfo{Size: fi.Size(), Allocated: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.Allocated = st.Blocks * 512
	}
	return info, nil
}

// copySparse copies src to dst, leaving all-zero 1 MiB regions as holes.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open image to copy: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat image to copy: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create image copy: %w", err)
	}
	if err := copyNonZero(in, out, fi.Size()); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close image copy: %w", err)
	}
	return nil
}

func copyNonZero(in io.ReaderAt, out *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return fmt.Errorf("size image copy: %w", err)
	}
	buf := make([]byte, regionSize)
	for off := int64(0); off < size; off += regionSize {
		b := buf[:min(regionSize, size-off)]
		if _, err := in.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read image at %d: %w", off, err)
		}
		if isZero(b) {
			continue
		}
		if _, err := out.WriteAt(b, off); err != nil {
			return fmt.Errorf("write image copy at %d: %w", off, err)
		}
	}
	return nil
}

var zeroRegion = make([]byte, regionSize)

// isZero reports whether b (at most regionSize long) is all zero bytes.
func isZero(b []byte) bool {
	return bytes.Equal(b, zeroRegion[:len(b)])
}

// ensureImage returns the cached image for spec, building it if needed.
func ensureImage(ctx context.Context, spec imageSpec, cacheDir string) (string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create image cache: %w", err)
	}
	path := filepath.Join(cacheDir, spec.cacheName())
	if _, err := os.Stat(path); err == nil {
		slog.Info("using cached image", "path", path)
		return path, nil
	}
	slog.Info("building image (cached for next runs)", "path", path, "kind", spec.Kind, "size_mib", spec.Size>>20)
	start := time.Now()
	if err := makeImage(ctx, spec, path); err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	slog.Info("image built", "path", path, "took", time.Since(start).Round(time.Second))
	return path, nil
}
