package testvm

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// seqDisks returns the A and B images the guest leaves after writing
// records 0..lastA to A and 0..lastB to B, in a ring of ring blocks on
// disks of size blocks.
func seqDisks(size, ring, lastA, lastB int64) ([]byte, []byte) {
	a := make([]byte, size*SeqBlockSize)
	b := make([]byte, size*SeqBlockSize)
	for n := int64(0); n <= max(lastA, lastB); n++ {
		off := n % ring * SeqBlockSize
		if n <= lastA {
			copy(a[off:], SeqRecord(n, 'A', ring))
		}
		if n <= lastB {
			copy(b[off:], SeqRecord(n, 'B', ring))
		}
	}
	return a, b
}

func TestCheckSeqValid(t *testing.T) {
	for _, c := range []struct {
		name               string
		size, ring, la, lb int64
	}{
		{"empty", 16, 16, -1, -1},
		{"first record on A only", 16, 16, 0, -1},
		{"equal", 16, 16, 9, 9},
		{"B one behind", 16, 16, 9, 8},
		{"full ring", 16, 16, 15, 15},
		{"wrapped", 16, 16, 40, 39},
		{"wrapped at the ring end", 16, 16, 48, 47},
		{"ring smaller than the disk", 32, 10, 25, 25},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := seqDisks(c.size, c.ring, c.la, c.lb)
			la, lb, err := CheckSeq(a, b)
			if err != nil || la != c.la || lb != c.lb {
				t.Fatalf("CheckSeq = %d, %d, %v; want %d, %d, nil", la, lb, err, c.la, c.lb)
			}
		})
	}
}

func TestCheckSeqInvalid(t *testing.T) {
	rec := func(n int64, disk byte, ring int64) []byte { return SeqRecord(n, disk, ring) }
	for _, c := range []struct {
		name   string
		la, lb int64
		damage func(a, b []byte)
		want   string
	}{
		{"B two behind", 9, 7, nil, "not from one instant"},
		{"B ahead", 8, 9, nil, "not from one instant"},
		{"hole on A", 9, 9, func(a, b []byte) { clear(a[4*SeqBlockSize : 5*SeqBlockSize]) }, "block 4: holds zeros, want record 4"},
		{"stale block on B", 20, 20, func(a, b []byte) { copy(b[2*SeqBlockSize:], rec(2, 'B', 16)) }, "block 2: holds record 2, want record 18"},
		{"disks swapped", 9, 9, func(a, b []byte) { copy(a, b) }, "disk A, block 0 (offset 0): holds record 0 of disk B"},
		{"misplaced record", 9, 9, func(a, b []byte) { copy(a[3*SeqBlockSize:], rec(5, 'A', 16)) }, "belongs in block 5"},
		{"torn write", 9, 9, func(a, b []byte) { copy(a[7*SeqBlockSize+2048:], rec(23, 'A', 16)[2048:]) }, "record 7 is damaged"},
		{"flipped byte in a header", 9, 9, func(a, b []byte) { b[3*SeqBlockSize+10] ^= 1 }, "wrong check word"},
		{"flipped byte in padding", 9, 9, func(a, b []byte) { b[3*SeqBlockSize+600] ^= 1 }, "record 3 is damaged"},
		{"garbage outside the ring", 9, 9, func(a, b []byte) { a[20*SeqBlockSize+1] = 1 }, "not a seq record"},
		{"ring mismatch", 3, 3, func(a, b []byte) { copy(b, rec(0, 'B', 8)) }, "has a ring of 16 blocks, earlier records 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := seqDisks(24, 16, c.la, c.lb)
			if c.damage != nil {
				c.damage(a, b)
			}
			la, lb, err := CheckSeq(a, b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckSeq = %d, %d, %v; want an error with %q", la, lb, err, c.want)
			}
		})
	}
}

func TestCheckSeqFiles(t *testing.T) {
	a, b := seqDisks(64, 64, 100, 99)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/a", a, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/b", b, 0o644); err != nil {
		t.Fatal(err)
	}
	la, lb, err := CheckSeqFiles(dir+"/a", dir+"/b")
	if err != nil || la != 100 || lb != 99 {
		t.Fatalf("CheckSeqFiles = %d, %d, %v; want 100, 99, nil", la, lb, err)
	}
}

// The record the guest's shell writes is byte for byte SeqRecord: run
// init.sh's record function with the host's busybox.
func TestSeqRecordMatchesInit(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Fatal(missingf("busybox: %w", err))
	}
	for _, c := range []struct {
		n, ring int64
		disk    byte
	}{{0, 16384, 'A'}, {1, 16384, 'B'}, {123456, 1000, 'A'}, {9999999999, 7, 'B'}} {
		cmd := exec.Command(bb, "sh", "-c", `. ./init.sh && record "$@"`, "sh",
			itoa(c.n), itoa(int64(c.disk-'A')), itoa(c.n%c.ring), itoa(c.ring))
		cmd.Env = append(os.Environ(), "DRTEST_SOURCE_ONLY=1")
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("record %d: %v", c.n, err)
		}
		if want := SeqRecord(c.n, c.disk, c.ring); !bytes.Equal(got, want) {
			t.Errorf("record %d %c: init.sh writes\n%q\nwant\n%q", c.n, c.disk, truncate(string(got), 200), truncate(string(want), 200))
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
