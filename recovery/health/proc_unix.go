//go:build unix

package health

import (
	"os/exec"
	"syscall"
)

// setGroup runs the command in a process group of its own and kills the
// whole group when the check's time is up: a check script's children
// (curl, ssh, sleep) must not outlive it.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
