package main

import (
	"fmt"
	"math"
	"os"
	"slices"
)

// modifyResult says what modifyImage changed.
type modifyResult struct {
	Blocks int   // 4 KiB blocks overwritten
	Total  int64 // 4 KiB blocks in the image
}

func (m modifyResult) String() string {
	return fmt.Sprintf("%d of %d blocks of 4 KiB (%s MiB, %.1f%%)", m.Blocks, m.Total,
		mib(int64(m.Blocks)*blockSize), 100*float64(m.Blocks)/float64(m.Total))
}

// modifyImage overwrites floor(fraction × blocks) distinct, 4 KiB-aligned
// 4 KiB blocks of the image at path with random bytes, like scattered
// guest writes. The blocks and bytes depend only on seed and image size.
func modifyImage(path string, fraction float64, seed uint64) (modifyResult, error) {
	if !(fraction > 0 && fraction <= 1) {
		return modifyResult{}, fmt.Errorf("fraction %v is not in (0, 1]", fraction)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return modifyResult{}, fmt.Errorf("open image to modify: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return modifyResult{}, fmt.Errorf("stat image to modify: %w", err)
	}
	total := fi.Size() / blockSize
	k := int64(math.Floor(fraction*float64(total) + 1e-9))
	r := newRNG("modify", seed)
	blocks := pickBlocks(total, k, r)
	buf := make([]byte, blockSize)
	for _, b := range blocks {
		r.read(buf)
		if _, err := f.WriteAt(buf, b*blockSize); err != nil {
			return modifyResult{}, fmt.Errorf("write block %d: %w", b, err)
		}
	}
	if err := f.Close(); err != nil {
		return modifyResult{}, fmt.Errorf("close modified image: %w", err)
	}
	return modifyResult{Blocks: len(blocks), Total: total}, nil
}

// pickBlocks returns k distinct numbers in [0, n), sorted, chosen
// uniformly (Floyd's algorithm: O(k) memory whatever n is).
func pickBlocks(n, k int64, r *rng) []int64 {
	k = min(k, n)
	chosen := make(map[int64]struct{}, k)
	out := make([]int64, 0, k)
	for j := n - k; j < n; j++ {
		t := int64(r.uint64n(uint64(j + 1)))
		if _, dup := chosen[t]; dup {
			t = j
		}
		chosen[t] = struct{}{}
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
