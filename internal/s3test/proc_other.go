//go:build !linux

package s3test

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; Stop still ends
// the server.
func setDeathSignal(*exec.Cmd) {}
