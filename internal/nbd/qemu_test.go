package nbd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in this file run QEMU's own NBD server (qemu-nbd) and its
// image tools. They fail, rather than skip, without them: a skipped test
// would hide that the client was never checked against the real server.

// requireTools fails the test unless the named programs are installed.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := "qemu-utils"
			if tool == "qemu-storage-daemon" {
				pkg = "qemu-system-common, pulled in by qemu-system-x86"
			}
			t.Fatalf("%s is not installed: the NBD tests run QEMU's NBD server (Debian package %s); "+
				"`make test` installs it, or run scripts/install-deps.sh", tool, pkg)
		}
	}
}

// runTool runs a program and fails the test if it fails.
func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// qemuNBD serves image read-only as export "disk" on a unix socket until
// the test ends, and returns the socket's path.
func qemuNBD(t testing.TB, image, format string, extra ...string) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	args := []string{"--persistent", "--shared=16", "--read-only", "--socket=" + sock,
		"--format=" + format, "--export-name=disk"}
	serveQEMU(t, sock, "qemu-nbd", append(append(args, extra...), image)...)
	return sock
}

// storageDaemon exports a qcow2 image read-only as "disk", with the given
// bitmaps, from qemu-storage-daemon: the same block-export-add an NBD
// export of a running VM goes through. It returns the socket's path.
func storageDaemon(t testing.TB, image string, bitmaps ...string) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	export := "type=nbd,id=exp0,node-name=disk0,name=disk,writable=off"
	for i, b := range bitmaps {
		export += fmt.Sprintf(",bitmaps.%d=%s", i, b)
	}
	serveQEMU(t, sock, "qemu-storage-daemon",
		"--blockdev", "driver=file,filename="+image+",node-name=file0",
		"--blockdev", "driver=qcow2,file=file0,node-name=disk0",
		"--nbd-server", "addr.type=unix,addr.path="+sock,
		"--export", export)
	return sock
}

// serveQEMU runs a QEMU NBD server until the test ends, and waits until
// it listens on sock.
func serveQEMU(t testing.TB, sock, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s %s exited: %v\n%s", name, strings.Join(args, " "), waitErr, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 10 s", name, sock)
		}
	}
}

// write is data put into a test image at a known place.
type write struct {
	off, len int64
	pattern  byte
}

// qemuImage makes a qcow2 image of size bytes and writes into it through
// qemu-io, QEMU's block layer (which also updates enabled persistent
// dirty bitmaps). It returns the path and the expected contents.
func qemuImage(t testing.TB, dir string, size int64, writes []write) (string, []byte) {
	t.Helper()
	img := filepath.Join(dir, "disk.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, fmt.Sprint(size))
	want := make([]byte, size)
	qemuWrite(t, img, want, writes)
	return img, want
}

// qemuWrite writes into img through qemu-io and records it in want.
func qemuWrite(t testing.TB, img string, want []byte, writes []write) {
	t.Helper()
	if len(writes) == 0 {
		return
	}
	args := []string{"-f", "qcow2"}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P %#x %d %d", w.pattern, w.off, w.len))
		copy(want[w.off:w.off+w.len], bytes.Repeat([]byte{w.pattern}, int(w.len)))
	}
	runTool(t, "qemu-io", append(args, img)...)
}

// roundOut returns the writes' ranges widened to multiples of unit, sorted
// and merged.
func roundOut(writes []write, unit int64) []Range {
	var out []Range
	for _, w := range writes {
		r := Range{Off: w.off - w.off%unit}
		r.Len = alignUp(w.off+w.len, unit) - r.Off
		out = append(out, r)
	}
	return mergeRanges(out)
}

// mergeRanges sorts ranges and joins those that touch or overlap.
func mergeRanges(rs []Range) []Range {
	rs = append([]Range(nil), rs...)
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Off < rs[j-1].Off; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && r.Off <= out[n-1].End() {
			out[n-1].Len = max(out[n-1].End(), r.End()) - out[n-1].Off
			continue
		}
		out = append(out, r)
	}
	return out
}

// complement returns what rs (sorted, merged) leave of [0, size).
func complement(rs []Range, size int64) []Range {
	var out []Range
	at := int64(0)
	for _, r := range rs {
		if r.Off > at {
			out = append(out, Range{at, r.Off - at})
		}
		at = r.End()
	}
	if at < size {
		out = append(out, Range{at, size - at})
	}
	return out
}

func rangesEqual(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestQEMUAllocationAndRead: base:allocation from qemu-nbd shows the
// clusters that were written, and reads return what was written, with
// zeros elsewhere.
func TestQEMUAllocationAndRead(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-io", "qemu-nbd")
	const size = 64 << 20
	writes := []write{
		{1 << 20, 64 << 10, 0xab},   // one whole cluster
		{3<<20 + 4096, 4096, 0xcd},  // part of a cluster
		{10 << 20, 200 << 10, 0x11}, // several clusters, the last in part
		{size - 512, 512, 0x77},     // the very end
	}
	img, want := qemuImage(t, shortTempDir(t), size, writes)
	sock := qemuNBD(t, img, "qcow2")
	ctx := testContext(t)
	c, err := Dial(ctx, "unix", sock, "disk", Options{MetaContexts: []string{ContextBaseAllocation}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != size {
		t.Fatalf("Size = %d, want %d", c.Size(), size)
	}
	alloc, err := c.AllocatedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("allocation: %+v", alloc)
	// qcow2 allocates whole 64 KiB clusters.
	if w := roundOut(writes, 64<<10); !rangesEqual(alloc.Allocated, w) {
		t.Errorf("Allocated = %v, want the written clusters %v", alloc.Allocated, w)
	}
	// Data must hold every written byte and nothing unallocated; Zero
	// is the rest.
	exact := roundOut(writes, 1)
	for _, w := range exact {
		if !covers(alloc.Data, w) {
			t.Errorf("Data %v misses written range %v", alloc.Data, w)
		}
	}
	for _, d := range alloc.Data {
		if !covers(alloc.Allocated, d) {
			t.Errorf("Data range %v is not allocated", d)
		}
	}
	if !rangesEqual(complement(alloc.Data, size), alloc.Zero) {
		t.Errorf("Zero %v is not the complement of Data %v", alloc.Zero, alloc.Data)
	}

	got := bytes.Repeat([]byte{0xee}, size) // holes must come back as zeros
	if err := c.ReadAt(ctx, got, 0); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("whole-image read differs at offset %d: %#x, want %#x", i, got[i], want[i])
	}
	p := make([]byte, 300)
	if err := c.ReadAt(ctx, p, 1<<20-100); err != nil || !bytes.Equal(p, want[1<<20-100:1<<20+200]) {
		t.Errorf("read across a hole/data boundary: %v", err)
	}
}

// covers says whether r lies inside one of rs.
func covers(rs []Range, r Range) bool {
	for _, x := range rs {
		if x.Off <= r.Off && r.End() <= x.End() {
			return true
		}
	}
	return false
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestQEMUDirtyBitmap: a persistent bitmap records the writes made after
// it was added; exported by qemu-nbd -B, or by qemu-storage-daemon's
// block export with "bitmaps", it shows exactly those, widened to the
// bitmap's granularity.
func TestQEMUDirtyBitmap(t *testing.T) {
	t.Run("qemu-nbd", func(t *testing.T) {
		requireTools(t, "qemu-img", "qemu-io", "qemu-nbd")
		testDirtyBitmap(t, func(img string) string { return qemuNBD(t, img, "qcow2", "--bitmap=dr-1") })
	})
	t.Run("qemu-storage-daemon", func(t *testing.T) {
		requireTools(t, "qemu-img", "qemu-io", "qemu-storage-daemon")
		testDirtyBitmap(t, func(img string) string { return storageDaemon(t, img, "dr-1") })
	})
}

func testDirtyBitmap(t *testing.T, serve func(image string) (socket string)) {
	const size = 64 << 20
	const granularity = 128 << 10
	dir := shortTempDir(t)
	// Written before the bitmap exists: allocated, but not dirty.
	img, want := qemuImage(t, dir, size, []write{{30 << 20, 64 << 10, 0x30}})
	runTool(t, "qemu-img", "bitmap", "--add", "-g", fmt.Sprint(granularity), img, "dr-1")
	writes := []write{
		{1 << 20, 4096, 0xab},         // inside one granule
		{5000 << 10, 300 << 10, 0xcd}, // unaligned, over three granules
		{40 << 20, 128 << 10, 0xef},   // exactly one granule
		{size - 1, 1, 0x01},           // the last byte
	}
	qemuWrite(t, img, want, writes)
	// An enabled bitmap cannot be exported read-only; a backup tool
	// exports a frozen one.
	runTool(t, "qemu-img", "bitmap", "--disable", img, "dr-1")
	sock := serve(img)

	ctx := testContext(t)
	bitmap := DirtyBitmapContext("dr-1")
	c, err := Dial(ctx, "unix", sock, "disk", Options{
		MetaContexts: []string{ContextBaseAllocation, bitmap, DirtyBitmapContext("not-there")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	idA, okA := c.ContextID(ContextBaseAllocation)
	idB, okB := c.ContextID(bitmap)
	if !okA || !okB || idA == idB {
		t.Fatalf("context ids: base:allocation %d %v, bitmap %d %v", idA, okA, idB, okB)
	}
	if _, ok := c.ContextID(DirtyBitmapContext("not-there")); ok {
		t.Error("a bitmap that is not exported was granted")
	}
	t.Logf("context ids: base:allocation %d, %s %d", idA, bitmap, idB)

	dirty, err := c.DirtyExtents(ctx, bitmap)
	if err != nil {
		t.Fatal(err)
	}
	if w := roundOut(writes, granularity); !rangesEqual(dirty, w) {
		t.Errorf("DirtyExtents = %v, want %v", dirty, w)
	}
	// Read the dirty data as a backup would, several ranges at once.
	var wg sync.WaitGroup
	errs := make(chan error, len(dirty))
	for _, r := range dirty {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, r.Len)
			if err := c.ReadAt(ctx, p, r.Off); err != nil {
				errs <- err
			} else if !bytes.Equal(p, want[r.Off:r.End()]) {
				errs <- fmt.Errorf("dirty range %v read back wrong", r)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestQEMUUnknownExport: QEMU's refusal reaches the caller intact.
func TestQEMUUnknownExport(t *testing.T) {
	requireTools(t, "qemu-img", "qemu-nbd")
	img, _ := qemuImage(t, shortTempDir(t), 1<<20, nil)
	sock := qemuNBD(t, img, "qcow2")
	for _, opts := range []Options{{}, {MetaContexts: []string{ContextBaseAllocation}}} {
		_, err := Dial(testContext(t), "unix", sock, "nope", opts)
		if err == nil || !strings.Contains(err.Error(), `"nope"`) || !errors.Is(err, ErrUnknownExport) {
			t.Errorf("Dial to a missing export (%v): %v", opts, err)
		} else {
			t.Log(err)
		}
	}
}

// TestQEMUBlockStatusPrefix: QEMU describes at most 131072 extents per
// block status reply, less than was asked for; BlockStatus must keep
// asking. A sparse raw file with a 4 KiB data block every 8 KiB has
// 132000 extents.
func TestQEMUBlockStatusPrefix(t *testing.T) {
	requireTools(t, "qemu-nbd")
	const blocks = 66000
	const size = 2 * 4096 * blocks
	img := filepath.Join(shortTempDir(t), "sparse.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i := range int64(blocks) {
		// One byte allocates the whole 4 KiB block, the unit of holes.
		if _, err := f.WriteAt([]byte{0x5a}, i*8192); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	t.Log("created", time.Since(t0))
	sock := qemuNBD(t, img, "raw")
	t.Log("served", time.Since(t0))
	ctx := testContext(t)
	c, err := Dial(ctx, "unix", sock, "disk", Options{MetaContexts: []string{ContextBaseAllocation}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	descs, err := c.blockStatus(ctx, 0, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) >= 2*blocks {
		t.Fatalf("QEMU described all %d extents in one reply; this test needs more", len(descs))
	}
	t.Logf("one block status request: %d extents", len(descs))
	t.Log("one", time.Since(t0))

	var want []Range
	for i := range int64(blocks) {
		want = append(want, Range{i * 8192, 4096})
	}
	alloc, err := c.AllocatedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rangesEqual(alloc.Allocated, want) || !rangesEqual(alloc.Data, want) {
		t.Errorf("Allocated: %d ranges, Data: %d, want %d", len(alloc.Allocated), len(alloc.Data), len(want))
	}
}
