// Package testimg makes disk images for tests: sparse, with the mix of
// random data, text, zeros and holes a VM disk has, and scattered writes.
package testimg

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
)

// Write makes a sparse disk image of size bytes from seed: random
// regions, text, allocated zeros and holes.
func Write(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for off := int64(0); off < size; {
		n := int64(rng.IntN(3<<20) + 4096)
		n = min(n, size-off)
		switch rng.IntN(4) {
		case 0: // hole
		case 1:
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(rng.UintN(256))
			}
			f.WriteAt(buf, off)
		case 2:
			buf := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), int(n/44)+1)[:n]
			f.WriteAt(buf, off)
		case 3:
			f.WriteAt(make([]byte, n), off) // allocated zeros
		}
		off += n
	}
}

// Scatter overwrites count random 4 KiB-aligned blocks with random data,
// like a VM's scattered writes.
func Scatter(t testing.TB, path string, count int, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	rng := rand.New(rand.NewPCG(seed, 2))
	blk := make([]byte, 4096)
	for range count {
		for i := range blk {
			blk[i] = byte(rng.UintN(256))
		}
		off := int64(rng.IntN(int(fi.Size()/4096))) * 4096
		if _, err := f.WriteAt(blk, off); err != nil {
			t.Fatal(err)
		}
	}
}
