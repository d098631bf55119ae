package chunk

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// BlockDigester computes the per-block change-detection digests kept in
// disk maps: a keyed SHA-256 cut to 64 bits. Keyed, so a guest cannot craft
// a block that collides with the one it replaces; 64 bits, because a digest
// is only ever compared with the digest of the same block in the parent.
// Digest 0 means "all zeros". Not safe for concurrent use; make one per
// goroutine.
type BlockDigester struct {
	key [32]byte
	h   hash.Hash
	sum [32]byte
}

// NewBlockDigester derives the digest key from the master key.
func (k *Key) NewBlockDigester() *BlockDigester {
	m := hmac.New(sha256.New, k.MAC[:])
	m.Write([]byte("drctl block digest v1"))
	d := &BlockDigester{h: sha256.New()}
	m.Sum(d.key[:0])
	return d
}

var zeroBlock [64 << 10]byte

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// Digest returns the digest of one block (0 for an all-zero block; never 0
// otherwise).
func (d *BlockDigester) Digest(block []byte) uint64 {
	if IsZero(block) {
		return 0
	}
	d.h.Reset()
	d.h.Write(d.key[:])
	d.h.Write(block)
	d.h.Sum(d.sum[:0])
	return binary.LittleEndian.Uint64(d.sum[:8]) | 1
}
