//go:build !linux

package testvm

import "os/exec"

// setProcAttr has no portable equivalent outside Linux; Kill and the
// test clean-up still end QEMU.
func setProcAttr(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) error { return cmd.Process.Kill() }

// lockFile does not lock outside Linux: concurrent builds are still
// safe (temporary file and rename), only wasteful.
func lockFile(string) (func(), error) { return func() {}, nil }
