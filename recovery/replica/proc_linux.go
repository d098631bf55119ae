package replica

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lockHolder reports which process holds QEMU's lock on its pidfile: the
// kernel drops the lock when the process dies, so unlike the pid written
// in the file it cannot be stale or reused. held with pid 0 means the
// holder is outside this pid namespace.
func lockHolder(path string) (pid int, held bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("check pidfile lock: %w", err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return 0, false, fmt.Errorf("check pidfile lock %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0, false, nil
	}
	return int(lk.Pid), true, nil
}

// signalHolder sends sig to pid if pid still holds the pidfile's lock.
// The pidfd pins the process, so the signal cannot hit an unrelated
// process that got the pid after QEMU exited.
func signalHolder(path string, pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("QEMU's pid is not visible from here")
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // gone already
	}
	if errors.Is(err, unix.ENOSYS) { // kernel < 5.3: a small race remains
		if holder, held, err := lockHolder(path); err != nil || !held || holder != pid {
			return err
		}
		return ignoreESRCH(syscall.Kill(pid, sig))
	}
	if err != nil {
		return fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if holder, held, err := lockHolder(path); err != nil || !held || holder != pid {
		return err
	}
	return ignoreESRCH(unix.PidfdSendSignal(fd, sig, nil, 0))
}

func ignoreESRCH(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// lockStart takes an exclusive flock on path, waiting while another Start
// holds it, until ctx ends. Closing the file releases it; O_CLOEXEC keeps
// QEMU from inheriting it.
func lockStart(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another start of this replica (%s): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// detach starts QEMU in a session of its own, without a parent-death
// signal: the replica must survive drctl and its terminal.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}
