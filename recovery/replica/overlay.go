package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// CreateOverlay creates a qcow2 overlay on base (qcow2 or raw): the
// replica writes into the overlay and the restored base image stays
// pristine, so a drill can be discarded and a failover retried. The base
// is recorded by absolute path and its format explicitly (probing a raw
// image is unsafe), and must not change while overlays use it. An
// existing overlay is refused rather than replaced: it may hold a
// replica's writes.
func CreateOverlay(ctx context.Context, base, baseFormat, overlay string) error {
	if err := createOverlay(ctx, base, baseFormat, overlay); err != nil {
		return fmt.Errorf("create overlay %s on %s: %w", overlay, base, err)
	}
	return nil
}

func createOverlay(ctx context.Context, base, baseFormat, overlay string) error {
	if baseFormat != "qcow2" && baseFormat != "raw" {
		return fmt.Errorf("base format %q: want qcow2 or raw", baseFormat)
	}
	if err := regularFile(base); err != nil {
		return err
	}
	if _, err := os.Lstat(overlay); err == nil {
		return fmt.Errorf("%w: it may hold a replica's writes; remove it first to start over", os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	bin, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("find qemu-img (Debian: qemu-utils): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "create", "-q", "-f", "qcow2",
		"-b", absPath(base), "-F", baseFormat, overlay).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img create: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
