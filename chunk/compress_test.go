package chunk_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/drctl/drctl/chunk"
)

func TestCodecEncodeDecode(t *testing.T) {
	c := testCodec(t)
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 5000)
	tests := []struct {
		name  string
		plain []byte
		// maxRatio bounds the stored size relative to the plaintext for
		// compressible data; 0 means the data is incompressible and must be
		// stored raw.
		maxRatio float64
	}{
		{"empty", nil, 0},
		{"empty non-nil", []byte{}, 0},
		{"one byte", []byte{42}, 0},
		{"random 100", randomBytes(1, 100), 0},
		{"random 64KiB", randomBytes(2, 64<<10), 0},
		{"random 1MiB", randomBytes(3, 1<<20), 0},
		{"zeros 1MiB", make([]byte, 1<<20), 0.01},
		{"text", text, 0.05},
		{"fs-like 1MiB", syntheticFS(4, 1<<20), 0.8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := c.BlobID(tc.plain)
			stored := c.Encode(nil, tc.plain, c.BlobID(tc.plain))
			if max := len(tc.plain) + 1 + chunk.Overhead; len(stored) > max {
				t.Fatalf("stored %d bytes for %d plaintext bytes, more than %d", len(stored), len(tc.plain), max)
			}
			if tc.maxRatio == 0 {
				if want := len(tc.plain) + 1 + chunk.Overhead; len(stored) != want {
					t.Errorf("incompressible: stored %d bytes, want raw %d", len(stored), want)
				}
			} else if ratio := float64(len(stored)) / float64(len(tc.plain)); ratio > tc.maxRatio {
				t.Errorf("compressible: stored/plain = %.3f, want ≤ %.3f", ratio, tc.maxRatio)
			}
			if len(tc.plain) >= 16 && bytes.Contains(stored, tc.plain[:min(len(tc.plain), 32)]) {
				t.Error("stored form contains the plaintext: not encrypted")
			}
			got, err := c.Decode(nil, stored, id)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, tc.plain) {
				t.Fatalf("Decode returned %d bytes that differ from the %d-byte plaintext", len(got), len(tc.plain))
			}
			// A blob opens only under the id it was written for.
			if _, err := c.Decode(nil, stored, chunk.ID{}); !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("Decode under another id: err = %v, want ErrAuth", err)
			}
			if got, err := c.DecodeVerify(nil, stored, id); err != nil || !bytes.Equal(got, tc.plain) {
				t.Fatalf("DecodeVerify: %v", err)
			}
		})
	}
}

// Encode and Decode append to dst, and the id check covers only what was
// appended.
func TestCodecAppend(t *testing.T) {
	c := testCodec(t)
	for _, plain := range [][]byte{nil, randomBytes(5, 3000), bytes.Repeat([]byte("ab"), 3000)} {
		prefix := []byte("some earlier bytes")
		stored := c.Encode(append([]byte(nil), prefix...), plain, c.BlobID(plain))
		if !bytes.HasPrefix(stored, prefix) {
			t.Fatal("Encode did not append to dst")
		}
		stored = stored[len(prefix):]
		got, err := c.Decode(append([]byte(nil), prefix...), stored, c.BlobID(plain))
		if err != nil {
			t.Fatalf("Decode into a non-empty dst: %v", err)
		}
		if !bytes.Equal(got, append(append([]byte(nil), prefix...), plain...)) {
			t.Fatal("Decode did not append the plaintext to dst")
		}
	}
}

func TestCodecDecodeWrongID(t *testing.T) {
	c := testCodec(t)
	for _, plain := range [][]byte{[]byte("hello"), randomBytes(6, 10000), make([]byte, 10000)} {
		stored := c.Encode(nil, plain, c.BlobID(plain))
		wrong := c.BlobID(append([]byte("x"), plain...))
		// A blob read under another id (a swapped or misplaced blob) fails
		// authentication.
		if _, err := c.Decode(nil, stored, wrong); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("Decode with a wrong id: err = %v, want ErrAuth", err)
		}
		// A blob written under a wrong id (a writer bug) authenticates, and
		// only the deep check finds it.
		mislabeled := c.Encode(nil, plain, wrong)
		if _, err := c.Decode(nil, mislabeled, wrong); err != nil {
			t.Fatalf("Decode of a mislabeled blob: %v", err)
		}
		_, err := c.DecodeVerify(nil, mislabeled, wrong)
		if !errors.Is(err, chunk.ErrIDMismatch) || errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("DecodeVerify of a mislabeled blob: err = %v, want ErrIDMismatch", err)
		}
	}
}

func TestCodecDecodeCorrupt(t *testing.T) {
	c := testCodec(t)
	for _, plain := range [][]byte{nil, []byte("short"), randomBytes(7, 2000), bytes.Repeat([]byte("compress me "), 500)} {
		stored := c.Encode(nil, plain, c.BlobID(plain))
		id := c.BlobID(plain)
		for bit := 0; bit < 8*len(stored); bit += 1 + bit/64 {
			if _, err := c.Decode(nil, flipBit(stored, bit), id); !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("%d-byte blob, bit %d flipped: err = %v, want ErrAuth", len(plain), bit, err)
			}
		}
		for n := 0; n < len(stored); n += 1 + n/16 {
			if _, err := c.Decode(nil, stored[:n], id); !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("%d-byte blob truncated to %d: err = %v, want ErrAuth", len(plain), n, err)
			}
		}
		other := newCodec(t, randomKey(t))
		if _, err := other.Decode(nil, stored, id); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("wrong key: err = %v, want ErrAuth", err)
		}
	}
}

func TestCodecSealOpen(t *testing.T) {
	c := testCodec(t)
	for _, plain := range [][]byte{nil, []byte(`{"version":1}`), bytes.Repeat([]byte("meta "), 10000), randomBytes(9, 5000)} {
		sealed := c.Seal(plain)
		got, err := c.Open(sealed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatal("Open(Seal(x)) != x")
		}
		if _, err := c.Open(flipBit(sealed, 8*len(sealed)-1)); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("tampered: err = %v, want ErrAuth", err)
		}
	}
	if _, err := c.Open(randomBytes(10, 100)); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("random bytes: err = %v, want ErrAuth", err)
	}
}

func TestCodecConcurrent(t *testing.T) {
	c := testCodec(t)
	inputs := [][]byte{syntheticFS(11, 200<<10), randomBytes(12, 100<<10), make([]byte, 50<<10), []byte("tiny")}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for g := range 4 {
		wg.Go(func() {
			for r := range 20 {
				plain := inputs[(g+r)%len(inputs)]
				got, err := c.Decode(nil, c.Encode(nil, plain, c.BlobID(plain)), c.BlobID(plain))
				if err != nil || !bytes.Equal(got, plain) {
					mu.Lock()
					failures = append(failures, "round trip failed under concurrency")
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatal(failures[0])
	}
}
