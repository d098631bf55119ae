package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRestoreQcow2: --format qcow2 writes a qcow2 image with the same
// content (checked with qemu-img compare).
func TestRestoreQcow2(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img is missing: make test installs qemu-utils")
	}
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	img := filepath.Join(e.dir, "vm.img")
	makeImage(t, img, 12<<20, 21)
	e.ok("init", "-r", repo)
	e.ok("replicate", "-r", repo, "--vm", "vm", "--disk", img)
	out := filepath.Join(e.dir, "out")
	e.ok("restore", "-r", repo, "--vm", "vm", "--target", out, "--format", "qcow2")
	restored := filepath.Join(out, "vm.img")
	info, err := exec.Command("qemu-img", "info", "--output=json", restored).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, info)
	}
	if cmp, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, restored).CombinedOutput(); err != nil {
		t.Fatalf("qcow2 differs from the image: %v\n%s", err, cmp)
	}
	e.fails(2, "--format", "restore", "-r", repo, "--vm", "vm", "--target", filepath.Join(e.dir, "o2"), "--format", "vmdk")
}
