package health_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/qga/qgatest"
	"github.com/drctl/drctl/recovery/health"
)

// appendAfter appends text to path after d, as a booting guest's console
// would.
func appendAfter(t *testing.T, path string, d time.Duration, text string) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		time.Sleep(d)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Error(err)
		}
	}()
}

func TestSerialWaitsForCompleteLine(t *testing.T) {
	log := filepath.Join(t.TempDir(), "serial.log")
	if err := os.WriteFile(log, []byte("SeaBIOS\r\nbooting\r\nDRTEST: DATA hex=ab"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The line is completed later: a match on "hex=ab" would be wrong.
	appendAfter(t, log, 150*time.Millisecond, "cd\r\nDRTEST: IDLE\r\n")
	c := health.Check{Name: "console", Kind: health.KindSerial, Pattern: regexp.MustCompile(`(?m)^DRTEST: DATA hex=([0-9a-f]+)$`),
		Timeout: 5 * time.Second, Interval: 20 * time.Millisecond}
	res := health.Run(t.Context(), c, health.Target{VM: "vm1", SerialLog: log})
	if !res.OK || res.Output != "DRTEST: DATA hex=abcd" || res.Err != "" {
		t.Fatalf("result %+v", res)
	}
	if res.Attempts < 2 || res.Name != "console" || res.Kind != health.KindSerial || res.Finished.Before(res.Started) {
		t.Fatalf("result %+v: want several attempts, name, kind and times", res)
	}
}

func TestSerialTimesOut(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "serial.log")
	if err := os.WriteFile(log, []byte("Kernel panic - not syncing\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := health.Check{Kind: health.KindSerial, Pattern: regexp.MustCompile(`login:`), Timeout: 200 * time.Millisecond, Interval: 30 * time.Millisecond}
	res := health.Run(t.Context(), c, health.Target{SerialLog: log})
	if res.OK || !strings.Contains(res.Err, "no success within 200ms") || !strings.Contains(res.Output, "Kernel panic") {
		t.Fatalf("result %+v", res)
	}
	if res.Name != health.KindSerial {
		t.Fatalf("name %q: want the kind when unnamed", res.Name)
	}
	// A log that does not exist yet (QEMU not started) is a failed
	// attempt, not an invalid check.
	res = health.Run(t.Context(), c, health.Target{SerialLog: filepath.Join(dir, "missing.log")})
	if res.OK || res.Attempts < 2 || !strings.Contains(res.Err, "read serial log") {
		t.Fatalf("result %+v", res)
	}
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res := health.Run(t.Context(), health.Check{Kind: health.KindTCP, Addr: l.Addr().String(), Timeout: 5 * time.Second}, health.Target{})
	if !res.OK || res.Attempts != 1 || !strings.Contains(res.Output, "connected to "+l.Addr().String()) {
		t.Fatalf("result %+v", res)
	}

	// A port bound but not listening refuses on every attempt, and stays
	// reserved (a port closed again could be taken by another test).
	addr := refusingAddr(t)
	res = health.Run(t.Context(), health.Check{Kind: health.KindTCP, Addr: addr, Timeout: 300 * time.Millisecond, Interval: 50 * time.Millisecond}, health.Target{})
	if res.OK || res.Attempts < 2 || !strings.Contains(res.Err, "refused") || !strings.Contains(res.Output, "refused") {
		t.Fatalf("result %+v", res)
	}
}

func TestGuestAgent(t *testing.T) {
	f := qgatest.Start(t, &qgatest.Agent{})
	res := health.Run(t.Context(), health.Check{Kind: health.KindGuestAgent, Timeout: 5 * time.Second}, health.Target{QGASocket: f.Socket})
	if !res.OK || res.Attempts != 1 {
		t.Fatalf("result %+v", res)
	}
	if got := f.Commands(); len(got) != 1 || got[0] != "guest-sync-delimited" {
		t.Fatalf("agent got %v: a health check must not change the guest", got)
	}

	// A silent agent (a channel without an agent behind it, as in a
	// guest without qemu-guest-agent) fails within the check's time.
	silent := qgatest.Start(t, &qgatest.Agent{Silent: true})
	start := time.Now()
	res = health.Run(t.Context(), health.Check{Kind: health.KindGuestAgent, Timeout: 400 * time.Millisecond, Interval: 50 * time.Millisecond},
		health.Target{QGASocket: silent.Socket})
	if res.OK || !strings.Contains(res.Err, "no success within") {
		t.Fatalf("result %+v", res)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("a silent agent held the check for %v", el)
	}
}

func TestCommandEnvAndOutput(t *testing.T) {
	tgt := health.Target{VM: "vm1", SerialLog: "/s/serial.log", QMPSocket: "/s/qmp.sock", QGASocket: "/s/qga.sock",
		Env: []string{"EXTRA=yes", "DRCTL_VM=forged"}}
	script := `test "$DRCTL_VM" = vm1 || exit 9; echo "$DRCTL_SERIAL_LOG $DRCTL_QMP_SOCKET $DRCTL_QGA_SOCKET $EXTRA"; echo warn >&2`
	res := health.Run(t.Context(), health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", script}, Timeout: 10 * time.Second}, tgt)
	if !res.OK || res.Output != "/s/serial.log /s/qmp.sock /s/qga.sock yes\nwarn\n" {
		t.Fatalf("result %+v", res)
	}
}

func TestCommandRetriesUntilSuccess(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "n")
	script := `n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$1"; echo "try $n"; [ $n -ge 3 ]`
	c := health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", script, "sh", counter}, Timeout: 10 * time.Second, Interval: 10 * time.Millisecond}
	res := health.Run(t.Context(), c, health.Target{})
	if !res.OK || res.Attempts != 3 || res.Output != "try 3\n" {
		t.Fatalf("result %+v", res)
	}
}

func TestCommandFails(t *testing.T) {
	c := health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", "echo not yet >&2; exit 3"}, Timeout: 150 * time.Millisecond, Interval: 40 * time.Millisecond}
	res := health.Run(t.Context(), c, health.Target{})
	if res.OK || !strings.Contains(res.Err, "exit status 3") || res.Output != "not yet\n" || res.Attempts < 2 {
		t.Fatalf("result %+v", res)
	}
	res = health.Run(t.Context(), health.Check{Kind: health.KindCommand, Command: []string{"/nonexistent/check"}, Timeout: 50 * time.Millisecond}, health.Target{})
	if res.OK || !strings.Contains(res.Err, "/nonexistent/check") {
		t.Fatalf("result %+v", res)
	}
}

func TestCommandTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The shell's child must die too, not only the shell.
	script := `sleep 30 & echo $! >"$1"; echo started; wait`
	c := health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", script, "sh", pidFile}, Timeout: 500 * time.Millisecond}
	start := time.Now()
	res := health.Run(t.Context(), c, health.Target{})
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("check took %v", el)
	}
	if res.OK || res.Attempts != 1 || !strings.Contains(res.Err, "killed") || res.Output != "started\n" {
		t.Fatalf("result %+v", res)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the command's child %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// zombie reports whether pid has exited but is not reaped yet (its parent,
// the killed shell, is gone, so init reaps it soon).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func TestOutputIsCapped(t *testing.T) {
	script := `i=0; while [ $i -lt 300 ]; do echo "line $i ........................................"; i=$((i+1)); done; echo END`
	res := health.Run(t.Context(), health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", script}, Timeout: 10 * time.Second}, health.Target{})
	if !res.OK || len(res.Output) > health.OutputLimit || !strings.HasSuffix(res.Output, "END\n") {
		t.Fatalf("ok %v, %d bytes of output ending %q", res.OK, len(res.Output), res.Output[max(0, len(res.Output)-40):])
	}
}

func TestInvalidChecks(t *testing.T) {
	for _, c := range []health.Check{
		{Kind: "ping"},
		{Kind: health.KindSerial},
		{Kind: health.KindTCP},
		{Kind: health.KindCommand},
		{Kind: health.KindGuestAgent},
	} {
		res := health.Run(t.Context(), c, health.Target{SerialLog: "/x"})
		if res.OK || res.Attempts != 0 || res.Err == "" {
			t.Errorf("%+v: result %+v", c, res)
		}
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	c := health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", "exit 1"}, Timeout: time.Minute, Interval: 20 * time.Millisecond}
	res := health.Run(ctx, c, health.Target{})
	if res.OK || !strings.Contains(res.Err, "context canceled") || res.Finished.Sub(res.Started) > 5*time.Second {
		t.Fatalf("result %+v", res)
	}
}

// refusingAddr reserves a loopback port with a socket that is bound but
// never listens: connections to it are refused.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// TestCutAttemptReportsTheOneBefore: when the deadline cuts an attempt
// short, the result says why the last whole attempt failed, not "timeout".
func TestCutAttemptReportsTheOneBefore(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "n")
	script := `n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$1"; if [ $n -eq 1 ]; then echo "port 80 closed"; exit 3; fi; exec sleep 10`
	c := health.Check{Kind: health.KindCommand, Command: []string{"/bin/sh", "-c", script, "sh", counter}, Timeout: 2 * time.Second, Interval: 10 * time.Millisecond}
	res := health.Run(t.Context(), c, health.Target{})
	if res.OK || res.Attempts != 2 || res.Output != "port 80 closed\n" || !strings.Contains(res.Err, "exit status 3") {
		t.Fatalf("result %+v", res)
	}
}
