package testvm

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts QEMU in its own process group, so Kill reaches
// anything it spawns and a Ctrl-C meant for go test does not race our
// clean-up, and has the kernel kill it if the test binary dies without
// cleaning up (a timeout panic, kill -9), so no guest outlives its test.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group setProcAttr made.
func killGroup(cmd *exec.Cmd) error {
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// lockFile takes an exclusive flock on path, creating it, and returns
// the unlock function. It serialises builds and KVM probes between test
// binaries and between parallel tests of one binary alike: flock locks
// belong to the open file, so two opens in one process exclude each
// other too.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}
