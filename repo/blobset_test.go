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
