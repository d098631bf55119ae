package main

import (
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
)

// rng is a deterministic random source. It uses ChaCha8, whose output Go
// guarantees to keep stable, and its own bounded-integer method, so the
// same seed gives the same image on every Go version.
type rng struct {
	c *rand.ChaCha8
}

// newRNG returns a generator for one purpose ("image", "modify", ...),
// so that different uses of the same seed do not share a stream.
func newRNG(purpose string, seed uint64) *rng {
	key := sha256.Sum256(fmt.Appendf(nil, "drctl benchtool %s %d", purpose, seed))
	return &rng{c: rand.NewChaCha8(key)}
}

// uint64n returns a uniform number in [0, n); n must be > 0.
func (r *rng) uint64n(n uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%n // a multiple of n
	for {
		if v := r.c.Uint64(); v < limit {
			return v % n
		}
	}
}

// read fills b with random bytes.
func (r *rng) read(b []byte) {
	_, _ = r.c.Read(b) // never fails
}
