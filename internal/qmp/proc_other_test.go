//go:build !linux

package qmp

import "os/exec"

// setChildAttrs has no portable equivalent of Pdeathsig outside Linux; the
// test's cleanup still kills QEMU.
func setChildAttrs(*exec.Cmd) {}

// killChild kills QEMU.
func killChild(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
