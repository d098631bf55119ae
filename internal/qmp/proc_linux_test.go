package qmp

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts QEMU in its own process group, so that stopping it
// reaches any helper it forks, and makes the kernel kill it if the test
// binary dies (timeout panic, kill -9) before the cleanup runs.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killChild kills QEMU's process group.
func killChild(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
