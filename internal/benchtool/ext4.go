package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// An ext4 image is laid out like a real VM disk: an ext4 file system made
// with mkfs.ext4 -d (no mount, no root needed) from real system files up
// to filesShare of the size, a seeded random file of randomShare (about
// 200 MiB for 2 GiB), and free space that stays as holes.
const (
	filesShare  = 0.62
	randomShare = 200.0 / 2048
)

// ext4Sources are copied into the image in this order until the budget is
// used: binaries, text and docs, Go sources and packages, libraries.
func ext4Sources(ctx context.Context) []string {
	goroot := "/usr/local/go"
	if out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	return []string{"/usr/bin", "/usr/share", goroot, "/usr/lib"}
}

func makeExt4(ctx context.Context, spec imageSpec, out string) error {
	mkfs, err := findMkfs()
	if err != nil {
		return err
	}
	st, err := newStager(filepath.Dir(out), mkfs)
	if err != nil {
		return err
	}
	defer st.cleanup()
	st.budget = int64(float64(spec.Size) * filesShare)
	for _, src := range ext4Sources(ctx) {
		if err := st.addTree(ctx, src); err != nil {
			return err
		}
	}
	randomSize := int64(float64(spec.Size)*randomShare) / blockSize * blockSize
	if err := writeRandomFile(filepath.Join(st.dir, "data", "random.bin"), randomSize, spec.Seed); err != nil {
		return err
	}
	slog.Info("staged files for mkfs.ext4", "files", st.files, "mib", mib(st.used), "random_mib", mib(randomSize), "hardlinked", st.link)
	scratch := scratchPath(out, spec.Size)
	if scratch == out {
		return runMkfs(ctx, mkfs, st.dir, out, spec)
	}
	defer os.Remove(scratch)
	if err := runMkfs(ctx, mkfs, st.dir, scratch, spec); err != nil {
		return err
	}
	return copySparse(scratch, out)
}

// scratchPath returns where mkfs should write: a file in /dev/shm when it
// has ample room, else out. mkfs.ext4 -d makes many small writes; on a
// busy disk it spends most of its time waiting (measured: 2m20s on disk,
// 47s in memory for the same tree), so building in memory and copying
// the result out is faster.
func scratchPath(out string, size int64) string {
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) != nil || int64(st.Bavail)*st.Bsize < 2*size {
		return out
	}
	return filepath.Join("/dev/shm", fmt.Sprintf("benchtool-%d-%s", os.Getpid(), filepath.Base(out)))
}

// findMkfs finds mkfs.ext4, also in sbin dirs that a non-root PATH lacks.
func findMkfs() (string, error) {
	if p, err := exec.LookPath("mkfs.ext4"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mkfs.ext4 not found: install e2fsprogs (make deps) or use -kind synthetic")
}

func runMkfs(ctx context.Context, mkfs, stage, out string, spec imageSpec) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	err = f.Truncate(spec.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size image: %w", err)
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-b", "4096", "-L", "drctl-bench",
		"-U", seededUUID(spec.Seed), "-E", "root_owner=0:0", "-d", stage, out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("run mkfs.ext4 -d: %w: %s", err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// seededUUID makes the file system UUID a function of the seed.
func seededUUID(seed uint64) string {
	var b [16]byte
	newRNG("uuid", seed).read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func writeRandomFile(path string, size int64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create random file: %w", err)
	}
	r := newRNG("random-file", seed)
	buf := make([]byte, regionSize)
	for left := size; left > 0; left -= int64(len(buf)) {
		b := buf[:min(int64(len(buf)), left)]
		r.read(b)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("write random file: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close random file: %w", err)
	}
	return nil
}

// stager builds the source tree for mkfs.ext4 -d. It hard-links system
// files when it can (no copy, no extra disk) and copies them otherwise.
// It only ever creates links and new files in its own directory, never
// writes to a linked file, and removing the tree leaves the originals.
type stager struct {
	dir    string
	link   bool
	budget int64
	used   int64
	files  int
}

// newStager makes the staging dir in the first place where a hard link
// to probe (a system file) works, else in fallback with copying.
func newStager(fallback, probe string) (*stager, error) {
	for _, parent := range []string{os.TempDir(), fallback} {
		dir, err := os.MkdirTemp(parent, "benchtool-stage-")
		if err != nil {
			continue
		}
		if os.Link(probe, filepath.Join(dir, "probe")) == nil {
			_ = os.Remove(filepath.Join(dir, "probe"))
			return &stager{dir: dir, link: true}, nil
		}
		_ = os.RemoveAll(dir)
	}
	dir, err := os.MkdirTemp(fallback, "benchtool-stage-")
	if err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	return &stager{dir: dir}, nil
}

func (s *stager) cleanup() {
	if err := os.RemoveAll(s.dir); err != nil {
		slog.Warn("remove staging dir", "dir", s.dir, "err", err)
	}
}

// addTree stages root (symlinks resolved) under s.dir, in lexical order,
// until the budget is used. Unreadable entries are skipped.
func (s *stager) addTree(ctx context.Context, root string) error {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		slog.Warn("skip image source", "path", root, "err", err)
		return nil
	}
	return filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if s.used >= s.budget {
			return fs.SkipAll
		}
		if err != nil {
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		return s.addEntry(p, d)
	})
}

func (s *stager) addEntry(p string, d fs.DirEntry) error {
	dst := filepath.Join(s.dir, p)
	switch {
	case d.IsDir():
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("create staging dir: %w", err)
		}
	case d.Type()&fs.ModeSymlink != 0:
		if target, err := os.Readlink(p); err == nil {
			_ = os.Symlink(target, dst)
		}
	case d.Type().IsRegular():
		info, err := d.Info()
		if err != nil || info.Size() > s.budget-s.used {
			return nil
		}
		if err := s.place(p, dst); err != nil {
			return nil // unreadable file: leave it out
		}
		s.used += (info.Size() + blockSize - 1) / blockSize * blockSize
		s.files++
	}
	return nil
}

func (s *stager) place(src, dst string) error {
	if s.link {
		if os.Link(src, dst) == nil {
			return nil
		}
		s.link = false // e.g. protected_hardlinks for a non-root user
	}
	return copyFile(src, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
