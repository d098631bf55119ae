// Package health checks that a replica VM came up: a pattern on its
// serial console, a TCP port that accepts, a guest agent that answers, or
// a command of the operator's that succeeds. A check is retried until it
// passes or its time runs out, because a replica that was just started is
// still booting.
package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/drctl/drctl/internal/qga"
)

// Check kinds.
const (
	KindSerial     = "serial"
	KindTCP        = "tcp"
	KindGuestAgent = "guest_agent"
	KindCommand    = "command"
)

// Defaults for a Check that leaves them out: a replica under TCG can take
// minutes to boot a full OS.
const (
	DefaultTimeout  = 5 * time.Minute
	DefaultInterval = time.Second
)

// OutputLimit caps Result.Output.
const OutputLimit = 4096

const (
	// tcpDialTimeout bounds one connection attempt: a filtered port
	// swallows SYNs, and the check should try again rather than hang.
	tcpDialTimeout = 3 * time.Second
	// agentTimeout bounds one guest agent exchange: an agent that is not
	// running leaves the channel silent.
	agentTimeout = 5 * time.Second
	// waitDelay is how long a killed command's pipes may stay open, held
	// by a process that left the group.
	waitDelay = 2 * time.Second
)

// Check is one health check.
type Check struct {
	Name string
	Kind string // serial, tcp, guest_agent or command
	// Pattern (serial) is matched against the whole serial log, with
	// carriage returns removed and up to its last newline, so (?m)^...$
	// works on lines and a line still being written cannot match half.
	Pattern *regexp.Regexp
	// Addr (tcp) is host:port.
	Addr string
	// Command (command) is the argv; it passes when it exits 0. It runs
	// with the Target's details in DRCTL_VM, DRCTL_SERIAL_LOG,
	// DRCTL_QMP_SOCKET and DRCTL_QGA_SOCKET, plus Target.Env, and is
	// killed, with its process group, when the check's time is up.
	Command []string
	// Timeout is the time for all attempts (default DefaultTimeout);
	// Interval the pause after a failed attempt (default
	// DefaultInterval).
	Timeout, Interval time.Duration
}

// Target is the replica under check.
type Target struct {
	VM        string
	SerialLog string
	QGASocket string
	QMPSocket string
	// Env are extra KEY=value pairs for command checks.
	Env []string
}

// Result is the outcome of a check.
type Result struct {
	Name, Kind        string
	OK                bool
	Started, Finished time.Time
	Attempts          int
	// Output is what the last attempt produced, at most OutputLimit
	// bytes: the serial match, the command's stdout and stderr (their
	// end), the address connected from, or the dial error.
	Output string
	// Err says why the check failed; "" when OK.
	Err string
}

// Run runs the check until it passes, its Timeout passes or ctx ends. A
// check that cannot work (no pattern, unknown kind, ...) fails at once,
// without attempts.
func Run(ctx context.Context, c Check, t Target) Result {
	res := Result{Name: c.Name, Kind: c.Kind, Started: time.Now()}
	if res.Name == "" {
		res.Name = c.Kind
	}
	finish := func(err error) Result {
		res.Finished = time.Now()
		res.OK = err == nil
		if err != nil {
			res.Err = err.Error()
		}
		return res
	}
	attempt, err := attemptFunc(c, t)
	if err != nil {
		return finish(fmt.Errorf("check %s: %w", res.Name, err))
	}
	timeout, interval := c.Timeout, c.Interval
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error // of the last attempt that ran its course
	for {
		res.Attempts++
		out, err := attempt(ctx)
		if err == nil {
			res.Output = capOutput(out)
			return finish(nil)
		}
		if ctx.Err() != nil && lastErr != nil {
			// The deadline cut this attempt short ("i/o timeout"): the one
			// before says why the check failed ("connection refused").
			return finish(giveUp(ctx, res.Started.Add(timeout), res.Attempts, timeout, lastErr))
		}
		res.Output, lastErr = capOutput(out), err
		select {
		case <-ctx.Done():
			return finish(giveUp(ctx, res.Started.Add(timeout), res.Attempts, timeout, err))
		case <-time.After(interval):
		}
	}
}

// giveUp is the error of a check whose time ran out.
func giveUp(ctx context.Context, deadline time.Time, attempts int, timeout time.Duration, last error) error {
	if !time.Now().Before(deadline) {
		return fmt.Errorf("no success within %v (%d attempts): last attempt: %w", timeout, attempts, last)
	}
	return fmt.Errorf("check stopped after %d attempts: %w: last attempt: %w", attempts, context.Cause(ctx), last)
}

type attemptFn func(ctx context.Context) (output string, err error)

func attemptFunc(c Check, t Target) (attemptFn, error) {
	switch c.Kind {
	case KindSerial:
		if c.Pattern == nil {
			return nil, errors.New("serial check without a pattern")
		}
		if t.SerialLog == "" {
			return nil, errors.New("serial check of a target without a serial log")
		}
		return func(context.Context) (string, error) { return serialAttempt(t.SerialLog, c.Pattern) }, nil
	case KindTCP:
		if c.Addr == "" {
			return nil, errors.New("tcp check without an address")
		}
		return func(ctx context.Context) (string, error) { return tcpAttempt(ctx, c.Addr) }, nil
	case KindGuestAgent:
		if t.QGASocket == "" {
			return nil, errors.New("guest agent check of a target without a guest agent socket")
		}
		return func(ctx context.Context) (string, error) { return agentAttempt(ctx, t.QGASocket) }, nil
	case KindCommand:
		if len(c.Command) == 0 {
			return nil, errors.New("command check without a command")
		}
		env := append(os.Environ(), t.Env...)
		// The target's own details last: they must be true whatever
		// Env says.
		env = append(env, "DRCTL_VM="+t.VM, "DRCTL_SERIAL_LOG="+t.SerialLog,
			"DRCTL_QMP_SOCKET="+t.QMPSocket, "DRCTL_QGA_SOCKET="+t.QGASocket)
		return func(ctx context.Context) (string, error) { return commandAttempt(ctx, c.Command, env) }, nil
	}
	return nil, fmt.Errorf("unknown check kind %q: want serial, tcp, guest_agent or command", c.Kind)
}

func serialAttempt(path string, re *regexp.Regexp) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read serial log: %w", err)
	}
	s := strings.ReplaceAll(string(b), "\r", "")
	s = s[:strings.LastIndexByte(s, '\n')+1]
	if loc := re.FindStringIndex(s); loc != nil {
		return s[loc[0]:loc[1]], nil
	}
	// The end of the log shows how far the guest got.
	return capOutput(s), fmt.Errorf("serial log %s (%d bytes) does not match %s", path, len(b), re)
}

func tcpAttempt(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: tcpDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err.Error(), fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	return fmt.Sprintf("connected to %s from %s", conn.RemoteAddr(), conn.LocalAddr()), nil
}

// agentAttempt proves the agent answers with the guest-sync-delimited
// exchange that qga.Dial performs: a fresh random id must come back, the
// same proof guest-ping gives, and qga has no other command that changes
// nothing in the guest.
func agentAttempt(ctx context.Context, socket string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	c, err := qga.Dial(ctx, socket)
	if err != nil {
		return err.Error(), err
	}
	c.Close()
	return "guest agent answered guest-sync-delimited", nil
}

func commandAttempt(ctx context.Context, argv, env []string) (string, error) {
	out := &tailBuffer{max: OutputLimit}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	setGroup(cmd)
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s: killed: %w", argv[0], context.Cause(ctx))
		} else {
			err = fmt.Errorf("%s: %w", argv[0], err)
		}
	}
	return out.String(), err
}

// capOutput keeps the end of s, where failures are usually explained.
func capOutput(s string) string {
	if len(s) <= OutputLimit {
		return s
	}
	return s[len(s)-OutputLimit:]
}

// tailBuffer keeps the last max bytes written to it. os/exec calls Write
// from one goroutine at a time when Stdout and Stderr are the same value.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return capOutput(string(t.b)) }
