package testvm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootTimeout is generous: under TCG on a busy 2-core host a boot can
// take 10 s instead of 4.
const bootTimeout = 60 * time.Second

// The guest boots, the seq workload reaches record 500 on two qcow2
// disks, and after a clean QEMU exit the images hold a valid prefix of
// the sequence.
func TestSeqLive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()
	vm, err := Start(ctx, t, Options{Mode: ModeSeq, Disks: []Disk{{Size: 64 << 20}, {Size: 64 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := vm.WaitBooted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted under %s in %v", vm.Accel(), boot.Round(time.Millisecond))
	t0 := time.Now()
	seq, err := vm.WaitSeq(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SEQ %d after %v more", seq, time.Since(t0).Round(time.Millisecond))
	if err := vm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lastA, lastB, err := CheckSeqImages(ctx, vm.DiskPaths()[0], vm.DiskPaths()[1])
	if err != nil {
		t.Fatal(err)
	}
	if lastB < seq {
		t.Fatalf("disks end at records %d/%d, the guest had reported %d", lastA, lastB, seq)
	}
	t.Logf("disks end at records A=%d B=%d", lastA, lastB)
}

// The verify workload reads back data written on the host, mapping disks
// by serial across formats, with networking on; QEMU then exits cleanly.
func TestVerifyLive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// QEMU's option syntax needs commas escaped.
	dir := filepath.Join(t.TempDir(), "a dir, with a comma")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	markers := []string{"drctl testvm marker on disk zero", "and another one on disk one"}
	raw0, raw1, qcow1 := filepath.Join(dir, "d0.raw"), filepath.Join(dir, "d1.raw"), filepath.Join(dir, "d1.qcow2")
	for i, p := range []string{raw0, raw1} {
		img := make([]byte, 1<<20)
		copy(img[8192:], markers[i])
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := qemuImg(ctx, "convert", "-f", "raw", "-O", "qcow2", raw1, qcow1); err != nil {
		t.Fatal(err)
	}
	vm, err := Start(ctx, t, Options{
		Mode:         ModeVerify,
		Disks:        []Disk{{Path: raw0}, {Path: qcow1}}, // formats sniffed
		VerifyOffset: 8192,
		Dir:          dir,
		Net:          true,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := vm.WaitVerified(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 2 {
		t.Fatalf("verify read %d disks, want 2", len(data))
	}
	for i, m := range markers {
		if !bytes.HasPrefix(data[i], []byte(m)) {
			t.Errorf("disk %d: read %q, want %q", i, data[i], m)
		}
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vm.Serial(), "DRTEST: NET eth0 10.0.2.15") {
		t.Errorf("no network set-up in the serial log:\n%s", vm.Serial())
	}
}

// The scatter workload writes where it says, and the test's QMP socket
// answers while it runs.
func TestScatterLive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm, err := Start(ctx, t, Options{Mode: ModeScatter, Disks: []Disk{{Size: 16 << 20}}, ScatterRate: 200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitSerial(ctx, regexp.MustCompile(`(?m)^DRTEST: SCATTER 100$`)); err != nil {
		t.Fatal(err)
	}
	status, err := vm.QMP(ctx, "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), `"running"`) {
		t.Errorf("query-status = %s, want running", status)
	}
	if err := vm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "raw")
	if err := ConvertToRaw(ctx, vm.DiskPaths()[0], raw); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for off := 0; off < len(img); off += SeqBlockSize {
		blk := img[off : off+SeqBlockSize]
		if isZero(blk) {
			continue
		}
		var i, b int
		if _, err := fmt.Sscanf(string(blk), "DRSCATTER i=%d disk=vda block=%d", &i, &b); err != nil || b != off/SeqBlockSize {
			t.Fatalf("block %d: %q", off/SeqBlockSize, truncate(string(blk[:100]), 100))
		}
		written++
	}
	// Random blocks may repeat, though rarely among 4096.
	if written < 90 {
		t.Errorf("%d blocks written, want about 100 or more", written)
	}
}

// A guest-side failure ends the wait at once, with the guest's message.
func TestGuestErrorLive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm, err := Start(ctx, t, Options{Mode: ModeIdle, Append: []string{"drtest.blocks=oops"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = vm.WaitBooted(ctx)
	if err == nil || !strings.Contains(err.Error(), "DRTEST: ERROR bad number for blocks: oops") {
		t.Fatalf("WaitBooted error = %v, want the guest's error", err)
	}
}
