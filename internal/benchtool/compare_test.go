package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDrctl follows drctl's CLI contract: a snapshot is a copy of the
// image; FAKE_FAIL=init makes init fail, FAKE_CORRUPT=1 corrupts restores.
const fakeDrctl = `#!/bin/bash
set -eu
cmd=$1; shift
case $cmd in
version) echo "drctl fake 0.0.1" ;;
init) [ "${FAKE_FAIL:-}" = init ] && { echo "init: boom" >&2; exit 3; }
      [ "$DRCTL_PASSWORD" != "" ]; mkdir -p "$2"; echo cfg > "$2/config" ;;
replicate) n=$(ls "$2" | wc -l); cp "$6" "$2/snap$n"
      echo '{"message_type":"status","percent_done":0.5}'
      echo "{\"message_type\":\"summary\",\"snapshot_id\":\"s$n\",\"bytes_read\":$(stat -c %s "$6"),\"bytes_new\":4096,\"bytes_stored\":2048,\"bytes_uploaded\":2100,\"objects_written\":2}" ;;
restore) latest=$(ls "$2"/snap* | sort -V | tail -1); cp "$latest" "$8/vm.img"
      if [ "${FAKE_CORRUPT:-}" = 1 ]; then printf X | dd of="$8/vm.img" bs=1 seek=5000 conv=notrunc status=none; fi ;;
*) exit 2 ;;
esac
`

// fakeRestic follows restic's CLI as compare uses it: restores land under
// target/<absolute path of the image>.
const fakeRestic = `#!/bin/bash
set -eu
case $1 in
version) echo "restic 0.0.0 fake" ;;
init) [ "$RESTIC_PASSWORD" != "" ]; mkdir -p "$3" ;;
-r) repo=$2
    case $3 in
    backup) n=$(ls "$repo" | wc -l); cp "$5" "$repo/snap$n"; echo "$5" > "$repo/path"
        echo '{"message_type":"status"}'
        echo "{\"message_type\":\"summary\",\"data_added\":1000,\"data_added_packed\":900,\"total_bytes_processed\":$(stat -c %s "$5")}" ;;
    restore) p=$(cat "$repo/path"); latest=$(ls "$repo"/snap* | sort -V | tail -1)
        mkdir -p "$6$(dirname "$p")"; cp "$latest" "$6$p" ;;
    esac ;;
*) exit 2 ;;
esac
`

func setupFakes(t *testing.T) compareOptions {
	t.Helper()
	dir := t.TempDir()
	bins := map[string]string{"drctl": fakeDrctl, "restic": fakeRestic}
	for name, script := range bins {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return compareOptions{
		Img:    buildSynthetic(t, 4<<20, 1),
		Work:   filepath.Join(dir, "work"),
		Cache:  filepath.Join(dir, "cache"),
		Drctl:  filepath.Join(dir, "drctl"),
		Restic: filepath.Join(dir, "restic"),
		Tools:  []string{"drctl", "restic"},
	}
}

func TestCompareWithFakeTools(t *testing.T) {
	opts := setupFakes(t)
	var out bytes.Buffer
	if err := runCompare(context.Background(), opts, &out); err != nil {
		t.Fatalf("runCompare: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range []string{
		"## drctl vs restic: 4.0 MiB image",
		"- drctl: drctl fake 0.0.1",
		"- restic: restic 0.0.0 fake",
		"changes, seed 42: 10 of 1024 blocks of 4 KiB",
		"changes, seed 43: 102 of 1024 blocks",
		"| full | drctl |",
		"| 4.0 | 0.0 | 0.0 | 0.0 | 2 | ok |", // read, new, stored, uploaded (MiB), objects
		"| full | restic |",
		"| n/a | n/a | ok |", // restic reports no uploads or objects
		"| restore latest | drctl |",
		"identical |",
		"### drctl / restic",
		"Restore speed: drctl",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if _, err := os.Stat(opts.Work); !os.IsNotExist(err) {
		t.Errorf("work dir not removed without -keep: %v", err)
	}
}

func TestCompareReportsCorruptRestore(t *testing.T) {
	opts := setupFakes(t)
	t.Setenv("FAKE_CORRUPT", "1")
	var out bytes.Buffer
	err := runCompare(context.Background(), opts, &out)
	if err == nil || !strings.Contains(err.Error(), "drctl restore latest") {
		t.Fatalf("err = %v, want the drctl restore to fail", err)
	}
	if !strings.Contains(out.String(), "DIFFERS at byte 5000") && !strings.Contains(out.String(), "differs from the source at byte 5000") {
		t.Errorf("report does not show the mismatch:\n%s", out.String())
	}
}

func TestCompareSkipsStepsAfterAFailure(t *testing.T) {
	opts := setupFakes(t)
	opts.Keep = true
	t.Setenv("FAKE_FAIL", "init")
	var out bytes.Buffer
	err := runCompare(context.Background(), opts, &out)
	if err == nil {
		t.Fatal("want an error")
	}
	report := out.String()
	if !strings.Contains(report, "| full | drctl | | | | | | | | | | | | skipped (earlier step failed) |") {
		t.Errorf("later drctl steps not skipped:\n%s", report)
	}
	if !strings.Contains(report, "| restore latest | restic |") || !strings.Contains(report, "init: boom") {
		t.Errorf("restic must still run and the failure must be shown:\n%s", report)
	}
	if _, err := os.Stat(filepath.Join(opts.Work, "logs", "drctl-init.log")); err != nil {
		t.Errorf("-keep must keep the logs: %v", err)
	}
}

func TestCompareRefusesNonEmptyWorkDir(t *testing.T) {
	opts := setupFakes(t)
	if err := os.MkdirAll(filepath.Join(opts.Work, "old-repo"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := runCompare(context.Background(), opts, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("err = %v", err)
	}
	opts.Drctl = filepath.Join(t.TempDir(), "missing")
	err = runCompare(context.Background(), opts, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "run make build") {
		t.Errorf("missing binary: err = %v", err)
	}
}

func TestSummaryScanner(t *testing.T) {
	var s summaryScanner
	input := "not json\n{\"message_type\":\"status\"}\n{\"message_type\":\"summary\",\"bytes_read\":5,\"x\":1.5}\n{\"message_type\":\"summary\",\"bytes_read\":9007199254740993}"
	for _, chunk := range strings.SplitAfter(input, "s") { // odd write boundaries
		if _, err := s.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	s.flush()
	if got := s.last.int("bytes_read"); got != 9007199254740993 {
		t.Errorf("bytes_read = %d, want the exact last value", got)
	}
	if got := s.last.int("missing"); got != -1 {
		t.Errorf("missing field = %d, want -1", got)
	}
}

func TestRatioAndFormatting(t *testing.T) {
	tests := map[[2]float64]string{{1, 2}: "0.50×", {30, 2}: "15×", {1, 100}: "0.010×", {1, 0}: "n/a", {-1, 5}: "n/a"}
	for in, want := range tests {
		if got := ratio(in[0], in[1]); got != want {
			t.Errorf("ratio(%v, %v) = %q, want %q", in[0], in[1], got, want)
		}
	}
	if got := mbps(2<<30, 10*time.Second); got != "215" {
		t.Errorf("mbps = %s", got)
	}
	if optMiB(-1) != "n/a" || optMiB(3<<20) != "3.0" || optInt(-1) != "n/a" {
		t.Error("n/a formatting")
	}
	if slug("incr +10% (seed 43)") != "incr--10---seed-43-" {
		t.Errorf("slug = %q", slug("incr +10% (seed 43)"))
	}
}

func TestDescribeSummary(t *testing.T) {
	var s summaryScanner
	_, _ = s.Write([]byte(`{"message_type":"summary","bytes_read":1048576,"bytes_stored":524288,"objects_written":3,"duration_seconds":1.5}` + "\n"))
	want := "read 1.0 MiB, new n/a, stored 0.5 MiB, uploaded n/a in 3 objects and n/a requests, 1.50 s"
	if got := describeSummary(s.last); got != want {
		t.Errorf("describeSummary =\n %q, want\n %q", got, want)
	}
}
