package testvm

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// serialPoll is how often the serial log is re-read.
const serialPoll = 50 * time.Millisecond

var (
	bootedRE = regexp.MustCompile(`(?m)^DRTEST: BOOTED\b.*$`)
	seqRE    = regexp.MustCompile(`(?m)^DRTEST: SEQ (\d+)$`)
	errorRE  = regexp.MustCompile(`(?m)^DRTEST: ERROR .*$`)
	dataRE   = regexp.MustCompile(`(?m)^DRTEST: DATA disk=(\d+) dev=\S+ offset=\d+ hex=([0-9a-f]*)$`)
)

// Serial is the serial console output so far, with the tty's carriage
// returns removed.
func (vm *VM) Serial() string {
	b, err := os.ReadFile(vm.serialPath)
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\r", "")
}

// WaitSerial waits until the serial log matches re and returns the first
// match. The whole log is searched, from the start, and only complete
// lines, so that "SEQ 50" is never taken from a half-written "SEQ 500".
// It fails early when the guest reports "DRTEST: ERROR" or QEMU exits;
// errors carry the diagnostics (serial log, QEMU output).
func (vm *VM) WaitSerial(ctx context.Context, re *regexp.Regexp) (string, error) {
	var match string
	err := vm.poll(ctx, re.String(), func(log string) bool {
		if loc := re.FindStringIndex(log); loc != nil {
			match = log[loc[0]:loc[1]]
			return true
		}
		return false
	})
	return match, err
}

// WaitBooted waits for "DRTEST: BOOTED" (devices ready, the workload
// about to start) and returns the time since QEMU started.
func (vm *VM) WaitBooted(ctx context.Context) (time.Duration, error) {
	if _, err := vm.WaitSerial(ctx, bootedRE); err != nil {
		return 0, err
	}
	return time.Since(vm.started), nil
}

// WaitSeq waits until the seq workload reports record n or a later one
// ("DRTEST: SEQ k" with k >= n: records 0..k are on both disks) and
// returns the highest k reported.
func (vm *VM) WaitSeq(ctx context.Context, n int64) (int64, error) {
	var last int64 = -1
	err := vm.poll(ctx, fmt.Sprintf("DRTEST: SEQ >= %d", n), func(log string) bool {
		last = lastSeq(log)
		return last >= n
	})
	return last, err
}

// lastSeq is the highest "DRTEST: SEQ k" in log, or -1.
func lastSeq(log string) int64 {
	var last int64 = -1
	for _, m := range seqRE.FindAllStringSubmatch(log, -1) {
		if k, err := strconv.ParseInt(m[1], 10, 64); err == nil && k > last {
			last = k
		}
	}
	return last
}

// poll re-reads the serial log until done accepts it.
func (vm *VM) poll(ctx context.Context, what string, done func(log string) bool) error {
	tick := time.NewTicker(serialPoll)
	defer tick.Stop()
	for {
		exited := false
		select {
		case <-vm.exited:
			exited = true // read the log once more: it is complete now
		default:
		}
		log := vm.Serial()
		log = log[:strings.LastIndexByte(log, '\n')+1]
		if done(log) {
			return nil
		}
		if m := errorRE.FindString(log); m != "" {
			return fmt.Errorf("waiting for %q: the guest failed: %s\n%s", what, m, vm.errDiagnostics())
		}
		if exited {
			return fmt.Errorf("waiting for %q: QEMU exited: %v\n%s", what, vm.waitErr, vm.errDiagnostics())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q: %w\n%s", what, ctx.Err(), vm.errDiagnostics())
		case <-vm.exited:
		case <-tick.C:
		}
	}
}

var verifiedRE = regexp.MustCompile(`(?m)^DRTEST: VERIFIED$`)

// WaitVerified waits for ModeVerify to finish and returns the 64 bytes it
// read from each data disk (at Options.VerifyOffset), in disk order.
func (vm *VM) WaitVerified(ctx context.Context) ([][]byte, error) {
	if _, err := vm.WaitSerial(ctx, verifiedRE); err != nil {
		return nil, err
	}
	var data [][]byte
	for _, m := range dataRE.FindAllStringSubmatch(vm.Serial(), -1) {
		i, _ := strconv.Atoi(m[1])
		b, err := hex.DecodeString(m[2])
		if err != nil || i != len(data) || len(b) != 64 {
			return nil, fmt.Errorf("verify: bad line %q\n%s", m[0], vm.errDiagnostics())
		}
		data = append(data, b)
	}
	return data, nil
}

var probeRE = regexp.MustCompile(`(?m)^DRTEST: PROBE t_ms=(\d+) writes=(\d+) max_us=(\d+)\r?$`)

// ProbeWindow is one report of ModeProbe: in the window ending at guest
// monotonic time TMs, Writes writes completed and the longest took MaxUs.
type ProbeWindow struct {
	TMs    int64
	Writes int
	MaxUs  int64
}

// ProbeWindows parses the ModeProbe reports in a serial log, oldest first.
func ProbeWindows(log string) []ProbeWindow {
	var ws []ProbeWindow
	for _, m := range probeRE.FindAllStringSubmatch(log, -1) {
		t, _ := strconv.ParseInt(m[1], 10, 64)
		n, _ := strconv.Atoi(m[2])
		us, _ := strconv.ParseInt(m[3], 10, 64)
		ws = append(ws, ProbeWindow{TMs: t, Writes: n, MaxUs: us})
	}
	return ws
}
