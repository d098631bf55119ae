package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/testvm"
)

// hmpWrite writes a pattern through a disk's device backend, where a
// guest's writes go.
func hmpWrite(t *testing.T, vm *testvm.VM, disk int, off, n int64, pattern byte) {
	t.Helper()
	cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/vdisk%d/virtio-backend "write -P %d %d %d"`, disk, pattern, off, n)
	out, err := vm.QMP(t.Context(), "human-monitor-command", map[string]string{"command-line": cmd})
	if err != nil || strings.Contains(string(out), "rror") {
		t.Fatalf("%s: %v %s", cmd, err, out)
	}
}

// TestLiveVMKilledAgent: drctl is killed with SIGKILL while it reads a
// live VM's snapshot. The next run cleans up what the killed one left in
// QEMU, loses no change, and commits a complete snapshot.
func TestLiveVMKilledAgent(t *testing.T) {
	vm, err := testvm.Start(t.Context(), t, testvm.Options{
		Mode:  testvm.ModeIdle,
		Disks: []testvm.Disk{{Size: 256 << 20}, {Size: 64 << 20}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	e.ok("init", "-r", repo)
	hmpWrite(t, vm, 0, 0, 4<<20, 0x11)
	e.ok("replicate", "-r", repo, "--vm", "live", "--qmp", vm.QMPSocket())

	// Enough changed data that the next run is still reading when killed.
	hmpWrite(t, vm, 0, 8<<20, 192<<20, 0x22)
	hmpWrite(t, vm, 1, 0, 1<<20, 0x33)
	cmd := exec.Command(drctlBin, "replicate", "-r", repo, "--vm", "live", "--qmp", vm.QMPSocket())
	cmd.Env, cmd.Dir = e.vars, e.dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := vm.QMP(t.Context(), "query-block-exports", nil)
		if err == nil && strings.Contains(string(out), "drctl-exp") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("drctl never exported the snapshot: %v %s", err, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let it read a little
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if rows := snapshots(t, e, repo); len(rows) != 1 {
		t.Fatalf("the killed run left %d snapshots, want 1", len(rows))
	}

	// More changes after the kill, then a run that must see all of them.
	hmpWrite(t, vm, 1, 32<<20, 64<<10, 0x44)
	sum := lastSummary(t, e.ok("replicate", "-r", repo, "--vm", "live", "--qmp", vm.QMPSocket(), "--json"))
	rows := snapshots(t, e, repo)
	if len(rows) != 2 {
		t.Fatalf("%d snapshots after the rerun, want 2", len(rows))
	}
	out, err := vm.QMP(t.Context(), "query-block-exports", nil)
	if err != nil || strings.Contains(string(out), "drctl-") {
		t.Fatalf("exports left after the rerun: %v %s", err, out)
	}

	// The restored disks hold every write, including the ones the killed
	// run was reading and the ones after it.
	dir := filepath.Join(e.dir, "out")
	e.ok("restore", "-r", repo, "--vm", "live", "--target", dir)
	check := func(disk string, off, n int64, want byte) {
		f, err := os.Open(filepath.Join(dir, disk))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		for i, b := range buf {
			if b != want {
				t.Fatalf("%s at %d: byte %#x, want %#x", disk, off+int64(i), b, want)
			}
		}
	}
	check("vdisk0", 0, 4<<20, 0x11)
	check("vdisk0", 8<<20, 192<<20, 0x22)
	check("vdisk1", 0, 1<<20, 0x33)
	check("vdisk1", 32<<20, 64<<10, 0x44)
	// Only what changed since the committed snapshot was read: the
	// killed run's bitmap was folded back, not lost and not replaced by a
	// full read.
	if changed := int64(192<<20 + 1<<20 + 64<<10); sum.BytesRead < changed || sum.BytesRead > changed+(1<<20) {
		t.Fatalf("rerun read %d bytes, want about the %d changed", sum.BytesRead, changed)
	}
}
