package chunk

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// ErrAuth means a ciphertext failed authentication: it was corrupted,
// truncated or encrypted with another key.
var ErrAuth = errors.New("authentication failed: data corrupted or wrong key")

// Key is a repository's master key: one half encrypts, the other keys the
// blob-id hash so the target's operator cannot confirm guessed contents.
type Key struct {
	Encrypt [32]byte `json:"encrypt"`
	MAC     [32]byte `json:"mac"`

	aead    cipher.AEAD
	macPool *sync.Pool
}

// NewRandomKey makes a fresh master key.
func NewRandomKey() (*Key, error) {
	k := &Key{}
	if _, err := rand.Read(k.Encrypt[:]); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	if _, err := rand.Read(k.MAC[:]); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, k.init()
}

// KeyFromBytes rebuilds a key from its 64-byte serialised form.
func KeyFromBytes(b []byte) (*Key, error) {
	if len(b) != 64 {
		return nil, fmt.Errorf("master key: want 64 bytes, got %d", len(b))
	}
	k := &Key{}
	copy(k.Encrypt[:], b[:32])
	copy(k.MAC[:], b[32:])
	return k, k.init()
}

// Bytes serialises the key (encrypt half, then MAC half).
func (k *Key) Bytes() []byte {
	b := make([]byte, 0, 64)
	b = append(b, k.Encrypt[:]...)
	return append(b, k.MAC[:]...)
}

func (k *Key) init() error {
	block, err := aes.NewCipher(k.Encrypt[:])
	if err != nil {
		return fmt.Errorf("init cipher: %w", err)
	}
	k.aead, err = cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("init gcm: %w", err)
	}
	mac := k.MAC
	k.macPool = &sync.Pool{New: func() any { return hmac.New(sha256.New, mac[:]) }}
	return nil
}

// BlobID is the keyed hash (HMAC-SHA-256) of a blob's plaintext.
func (k *Key) BlobID(data []byte) ID {
	h := k.macPool.Get().(hash.Hash)
	h.Reset()
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	k.macPool.Put(h)
	return id
}

// Overhead is what Seal adds to a plaintext: nonce and tag.
const Overhead = 12 + 16

// Seal encrypts plaintext with a random nonce and appends nonce‖ciphertext‖tag
// to dst.
func (k *Key) Seal(dst, plaintext []byte) []byte { return k.seal(dst, plaintext, nil) }

// Open authenticates and decrypts a sealed message, appending the plaintext
// to dst.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) { return k.open(dst, sealed, nil) }

func (k *Key) seal(dst, plaintext, ad []byte) []byte {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		// crypto/rand never fails on supported platforms; a broken RNG
		// must not produce a reused nonce.
		panic(fmt.Sprintf("read random nonce: %v", err))
	}
	dst = append(dst, nonce[:]...)
	return k.aead.Seal(dst, nonce[:], plaintext, ad)
}

func (k *Key) open(dst, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("open: %d bytes is shorter than the %d-byte envelope: %w", len(sealed), Overhead, ErrAuth)
	}
	out, err := k.aead.Open(dst, sealed[:12], sealed[12:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}
