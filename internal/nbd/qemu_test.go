package nbd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The tests in this file run QEMU's own NBD server (qemu-nbd) and its
// image tools. They fail, rather than skip, without them: a skipped test
// would hide that the client was never checked against the real server.

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
	sock := qemuNBD(t, img, "raw")
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
