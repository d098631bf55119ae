package repo

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/drctl/drctl/chunk"
)

func testID(i int) chunk.ID {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return chunk.ID(sha256.Sum256(b[:]))
}

func TestBlobSet(t *testing.T) {
	const n = 200000
	for _, tc := range []struct {
		name   string
		budget int64
		exact  bool
		maxFP  float64 // false positives allowed among n absent ids
	}{
		{"exact", n * exactEntryBytes, true, 0},
		{"bloom at the size cap", n * exactEntryBytes / 2, false, 1e-5}, // 32 bits a blob
		{"bloom at 8 bits a blob", n, false, 0.03},                      // about 2 %
		{"bloom far too small", 1024, false, 1},                         // still no false negative
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newBlobSet(n, tc.budget)
			if s.exact() != tc.exact {
				t.Fatalf("exact = %v", s.exact())
			}
			if !tc.exact && s.bytes() > tc.budget {
				t.Fatalf("filter takes %d bytes, budget %d", s.bytes(), tc.budget)
			}
			added := 0
			for i := range n {
				if s.add(testID(i)) {
					added++
				}
			}
			if tc.exact && added != n {
				t.Fatalf("%d of %d new", added, n)
			}
			for i := range n {
				if !s.has(testID(i)) {
					t.Fatalf("false negative for id %d", i)
				}
			}
			fp := 0
			for i := n; i < 2*n; i++ {
				if s.has(testID(i)) {
					fp++
				}
			}
			rate := float64(fp) / n
			t.Logf("%d bytes, false-positive rate %.2g", s.bytes(), rate)
			if rate > tc.maxFP {
				t.Fatalf("false-positive rate %.3g above %.3g", rate, tc.maxFP)
			}
		})
	}
}

// TestReuseBlobSet: the second set prune builds takes the first one's
// memory, and starts empty.
func TestReuseBlobSet(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n1, n2    int
		budget    int64
		sameBits  bool
		wantExact bool
	}{
		{"exact", 1000, 800, 1 << 20, false, true},
		{"bloom", 100000, 80000, 1 << 16, true, false},
		{"bloom grows", 1000, 100000, 1 << 16, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newBlobSet(tc.n1, tc.budget)
			for i := range tc.n1 {
				a.add(testID(i))
			}
			b := reuseBlobSet(a, tc.n2, tc.budget)
			if b.exact() != tc.wantExact {
				t.Fatalf("exact = %v", b.exact())
			}
			if ab, ok := a.(*bloom); ok && tc.sameBits {
				if &ab.bits[0] != &b.(*bloom).bits[0] {
					t.Fatal("a new filter was allocated")
				}
			}
			hits := 0
			for i := range tc.n1 {
				if b.has(testID(i)) {
					hits++
				}
			}
			if hits != 0 {
				t.Fatalf("the reused set still holds %d ids", hits)
			}
			b.add(testID(1))
			if !b.has(testID(1)) {
				t.Fatal("false negative")
			}
		})
	}
}
