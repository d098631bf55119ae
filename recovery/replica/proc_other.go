//go:build !linux

package replica

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
)

// Replicas rely on Linux: fcntl lock queries on QEMU's pidfile and
// pidfds. Elsewhere every operation fails with this error.
var errUnsupported = errors.New("replicas are supported on Linux only")

func lockHolder(string) (int, bool, error)              { return 0, false, errUnsupported }
func signalHolder(string, int, syscall.Signal) error    { return errUnsupported }
func lockStart(context.Context, string) (func(), error) { return nil, errUnsupported }
func detach(*exec.Cmd)                                  {}
