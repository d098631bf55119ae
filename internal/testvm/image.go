package testvm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// CreateImage creates an empty disk image of size bytes: qcow2 with
// qemu-img (what drctl meets in production, and the format that keeps
// persistent dirty bitmaps), raw as a sparse file.
func CreateImage(ctx context.Context, path, format string, size int64) error {
	if size <= 0 {
		return fmt.Errorf("create image %s: size %d", path, size)
	}
	switch format {
	case "qcow2":
		return qemuImg(ctx, "create", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10))
	case "raw":
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("create image: %w", err)
		}
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("create image: %w", err)
		}
		return nil
	}
	return fmt.Errorf("create image %s: unknown format %q (want qcow2 or raw)", path, format)
}

// ConvertToRaw writes a raw copy of a disk image in any format QEMU
// reads. The image must not be open in a running QEMU: image locking
// refuses it, and a live image would not be consistent anyway.
func ConvertToRaw(ctx context.Context, src, dst string) error {
	return qemuImg(ctx, "convert", "-O", "raw", src, dst)
}

func qemuImg(ctx context.Context, args ...string) error {
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return missingf("qemu-img: %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img %s: %w: %s", args[0], err, out)
	}
	return nil
}

// CheckSeqImages is CheckSeqFiles for images in any format QEMU reads,
// such as the qcow2 disks of a stopped VM: it converts them to raw
// temporary files first.
func CheckSeqImages(ctx context.Context, imageA, imageB string) (lastA, lastB int64, err error) {
	dir, err := os.MkdirTemp("", "drtvm-seq-")
	if err != nil {
		return 0, 0, fmt.Errorf("check seq: %w", err)
	}
	defer os.RemoveAll(dir)
	rawA, rawB := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	if err := ConvertToRaw(ctx, imageA, rawA); err != nil {
		return 0, 0, err
	}
	if err := ConvertToRaw(ctx, imageB, rawB); err != nil {
		return 0, 0, err
	}
	return CheckSeqFiles(rawA, rawB)
}
