package repo

import (
	"encoding/binary"
	"math"

	"github.com/drctl/drctl/chunk"
)

// blobSet is a set of blob ids that prune keeps whatever the size of the
// repository: exact while the ids fit its memory budget, a Bloom filter
// beyond. A false positive of the filter only makes prune keep a blob
// nothing uses, which a later prune (with more memory) can still remove;
// it never makes prune delete a blob in use.
type blobSet interface {
	// add inserts id and reports whether it was (probably) absent.
	add(id chunk.ID) bool
	// has reports whether id was (probably) added.
	has(id chunk.ID) bool
	// exact reports whether has never answers a false positive.
	exact() bool
	// bytes is the memory the set takes, roughly.
	bytes() int64
}

// exactEntryBytes is what one id costs in an exact set: the 32-byte key
// and the map's slots and control bytes at its usual load, plus the
// transient doubling while the map grows.
const exactEntryBytes = 80

// bloomBitsPerBlob caps the filter's size: at 32 bits a blob and 16
// probes the false-positive rate is about 3 in 10 million.
const bloomBitsPerBlob = 32

// newBlobSet returns a set for about n ids within budget bytes.
func newBlobSet(n int, budget int64) blobSet {
	n = max(n, 1)
	if int64(n)*exactEntryBytes <= budget {
		return exactSet{} // grown as ids come: fewer may be added than n
	}
	return newBloom(n, budget)
}

// reuseBlobSet returns a set for about n ids within budget, in the memory
// of old where it can: prune builds its two sets one after the other, and
// leaving the first to the garbage collector would put both in the heap at
// once.
func reuseBlobSet(old blobSet, n int, budget int64) blobSet {
	n = max(n, 1)
	exact := int64(n)*exactEntryBytes <= budget
	switch o := old.(type) {
	case exactSet:
		if exact {
			clear(o)
			return o
		}
	case *bloom:
		if words := bloomWords(n, budget); !exact && words <= int64(len(o.bits)) {
			bits := o.bits[:words]
			clear(bits)
			return newBloomIn(bits, n)
		}
	}
	return newBlobSet(n, budget)
}

type exactSet map[chunk.ID]struct{}

func (s exactSet) add(id chunk.ID) bool {
	if _, ok := s[id]; ok {
		return false
	}
	s[id] = struct{}{}
	return true
}

func (s exactSet) has(id chunk.ID) bool {
	_, ok := s[id]
	return ok
}

func (s exactSet) exact() bool  { return true }
func (s exactSet) bytes() int64 { return int64(len(s)) * exactEntryBytes }

// bloom is a Bloom filter over blob ids. Blob ids are keyed hashes of
// their content, uniformly distributed, so the probes are taken from the
// id itself (double hashing on two of its 64-bit words) and no hash
// function runs: that, and needing only add and has, is why this is not
// a general-purpose library's filter.
type bloom struct {
	bits []uint64
	m    uint64 // number of bits
	k    int    // probes per id
}

func newBloom(n int, budget int64) *bloom {
	return newBloomIn(make([]uint64, bloomWords(n, budget)), n)
}

// bloomWords is the size of a filter for n ids within budget bytes.
func bloomWords(n int, budget int64) int64 {
	return min(max(budget/8, 1), (int64(n)*bloomBitsPerBlob+63)/64)
}

// newBloomIn makes a filter for n ids in bits, which must be zero.
func newBloomIn(bits []uint64, n int) *bloom {
	m := uint64(len(bits)) * 64
	k := int(math.Round(float64(m) / float64(n) * math.Ln2))
	return &bloom{bits: bits, m: m, k: min(max(k, 1), 16)}
}

func (b *bloom) probes(id chunk.ID, fn func(word int, mask uint64) bool) {
	h1 := binary.LittleEndian.Uint64(id[0:8])
	h2 := binary.LittleEndian.Uint64(id[8:16]) | 1
	for i := range b.k {
		pos := (h1 + uint64(i)*h2) % b.m
		if !fn(int(pos/64), 1<<(pos%64)) {
			return
		}
	}
}

func (b *bloom) add(id chunk.ID) bool {
	added := false
	b.probes(id, func(w int, mask uint64) bool {
		if b.bits[w]&mask == 0 {
			added = true
			b.bits[w] |= mask
		}
		return true
	})
	return added
}

func (b *bloom) has(id chunk.ID) bool {
	in := true
	b.probes(id, func(w int, mask uint64) bool {
		in = b.bits[w]&mask != 0
		return in
	})
	return in
}

func (b *bloom) exact() bool  { return false }
func (b *bloom) bytes() int64 { return int64(len(b.bits)) * 8 }
