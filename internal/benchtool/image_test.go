package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func buildSynthetic(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vm.img")
	if err := makeImage(context.Background(), imageSpec{Kind: "synthetic", Size: size, Seed: seed}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSyntheticImageIsDeterministicAndSparse(t *testing.T) {
	const size = 32 << 20
	a, b, c := buildSynthetic(t, size, 7), buildSynthetic(t, size, 7), buildSynthetic(t, size, 8)
	da, db, dc := mustRead(t, a), mustRead(t, b), mustRead(t, c)
	if !bytes.Equal(da, db) {
		t.Error("same seed gave different images")
	}
	if bytes.Equal(da, dc) {
		t.Error("different seeds gave the same image")
	}
	if int64(len(da)) != size {
		t.Fatalf("size = %d, want %d", len(da), size)
	}
	info, err := statImage(a)
	if err != nil {
		t.Fatal(err)
	}
	if info.Allocated >= size {
		t.Errorf("allocated %d of %d: want holes", info.Allocated, size)
	}
	zero, data := 0, 0
	for off := 0; off < size; off += regionSize {
		if isZero(da[off : off+regionSize]) {
			zero++
		} else {
			data++
		}
	}
	if zero == 0 || data == 0 {
		t.Errorf("regions: %d zero, %d with data: want both", zero, data)
	}
}

func TestMakeImageRejectsBadSpecs(t *testing.T) {
	for _, spec := range []imageSpec{{Kind: "synthetic", Size: 4097}, {Kind: "qcow2", Size: 1 << 20}, {Kind: "ext4", Size: 0}} {
		if err := makeImage(context.Background(), spec, filepath.Join(t.TempDir(), "x.img")); err == nil {
			t.Errorf("makeImage(%+v) succeeded", spec)
		}
	}
}

func TestModifyChangesExactlyTheAskedBlocks(t *testing.T) {
	const size = 8 << 20 // 2048 blocks
	tests := []struct {
		fraction float64
		want     int
	}{{0.01, 20}, {0.10, 204}, {0.57, 1167}, {1, 2048}, {0.0001, 0}}
	for _, tt := range tests {
		img := buildSynthetic(t, size, 1)
		before := mustRead(t, img)
		m, err := modifyImage(img, tt.fraction, 42)
		if err != nil {
			t.Fatal(err)
		}
		after := mustRead(t, img)
		changed := 0
		for off := 0; off < size; off += blockSize {
			if !bytes.Equal(before[off:off+blockSize], after[off:off+blockSize]) {
				changed++
			}
		}
		if m.Blocks != tt.want || changed != tt.want || m.Total != size/blockSize {
			t.Errorf("fraction %v: reported %d of %d, changed %d, want %d", tt.fraction, m.Blocks, m.Total, changed, tt.want)
		}
	}
}

func TestModifyIsDeterministic(t *testing.T) {
	a, b := buildSynthetic(t, 4<<20, 1), buildSynthetic(t, 4<<20, 1)
	for _, p := range []string{a, b} {
		if _, err := modifyImage(p, 0.05, 43); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(mustRead(t, a), mustRead(t, b)) {
		t.Error("same seed modified differently")
	}
	if _, err := modifyImage(a, 0, 1); err == nil {
		t.Error("fraction 0 accepted")
	}
	if _, err := modifyImage(a, 1.5, 1); err == nil {
		t.Error("fraction 1.5 accepted")
	}
}

func TestPickBlocks(t *testing.T) {
	for _, tc := range []struct{ n, k int64 }{{10, 0}, {10, 3}, {10, 10}, {1 << 20, 5000}, {5, 9}} {
		got := pickBlocks(tc.n, tc.k, newRNG("test", 1))
		if want := min(tc.k, tc.n); int64(len(got)) != want {
			t.Errorf("pickBlocks(%d, %d): %d blocks, want %d", tc.n, tc.k, len(got), want)
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("pickBlocks(%d, %d) not sorted and distinct: %v", tc.n, tc.k, got)
		}
		for _, b := range got {
			if b < 0 || b >= tc.n {
				t.Fatalf("pickBlocks(%d, %d): %d out of range", tc.n, tc.k, b)
			}
		}
	}
	if !slices.Equal(pickBlocks(1000, 10, newRNG("test", 1)), pickBlocks(1000, 10, newRNG("test", 1))) {
		t.Error("pickBlocks is not deterministic")
	}
}

func TestCopySparse(t *testing.T) {
	src := buildSynthetic(t, 16<<20, 3)
	dst := filepath.Join(t.TempDir(), "copy.img")
	if err := copySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	if off, err := firstDifference(src, dst); err != nil || off != -1 {
		t.Fatalf("firstDifference = %d, %v; want -1", off, err)
	}
	si, _ := statImage(src)
	di, _ := statImage(dst)
	if di.Allocated > si.Allocated {
		t.Errorf("copy allocates %d, source %d: holes lost", di.Allocated, si.Allocated)
	}
}

func TestFirstDifference(t *testing.T) {
	dir := t.TempDir()
	base := bytes.Repeat([]byte{7}, 3*regionSize+5)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", base)
	changed := slices.Clone(base)
	changed[2*regionSize+9] = 1
	tests := []struct {
		name string
		b    []byte
		want int64
	}{
		{"same", base, -1},
		{"changed", changed, 2*regionSize + 9},
		{"shorter", base[:regionSize+1], regionSize + 1},
		{"longer", append(slices.Clone(base), 7), int64(len(base))},
	}
	for _, tt := range tests {
		got, err := firstDifference(a, write(tt.name, tt.b))
		if err != nil || got != tt.want {
			t.Errorf("%s: firstDifference = %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{"4096": 4096, "256M": 256 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "512k": 512 << 10, "1T": 1 << 40, "3MB": 3 << 20}
	for in, want := range good {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1M", "1.5G", "abc", "0"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExt4Image(t *testing.T) {
	if _, err := findMkfs(); err != nil {
		t.Skip(err)
	}
	const size = 64 << 20
	p := filepath.Join(t.TempDir(), "ext4.img")
	if err := makeImage(context.Background(), imageSpec{Kind: "ext4", Size: size, Seed: 1}, p); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	magic := make([]byte, 2)
	if _, err := f.ReadAt(magic, 1024+0x38); err != nil { // superblock s_magic
		t.Fatal(err)
	}
	if magic[0] != 0x53 || magic[1] != 0xEF {
		t.Errorf("no ext4 superblock magic: %x", magic)
	}
	info, err := statImage(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size || info.Allocated < size/2 || info.Allocated >= size {
		t.Errorf("size %d, allocated %d: want %d with some data and some holes", info.Size, info.Allocated, size)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}
