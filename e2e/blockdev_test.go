package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBlockDevice replicates a block device (a loop device over an image)
// and restores it as a file.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach a loop device")
	}
	e := newEnv(t)
	img := filepath.Join(e.dir, "backing.img")
	makeImage(t, img, 24<<20, 31)
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	repo := filepath.Join(e.dir, "repo")
	e.ok("init", "-r", repo)
	e.ok("replicate", "-r", repo, "--vm", "blk", "--disk", "root="+dev)
	scatter(t, img, 50, 32)
	e.ok("replicate", "-r", repo, "--vm", "blk", "--disk", "root="+dev)
	restored := filepath.Join(e.dir, "out")
	e.ok("restore", "-r", repo, "--vm", "blk", "--target", restored)
	sameFile(t, img, filepath.Join(restored, "root"))
}
