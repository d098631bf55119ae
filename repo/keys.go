package repo

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// KDFParams are the argon2id cost parameters of one key file.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF costs about a tenth of a second and 64 MiB on a small server:
// cheap for an agent opening the repository every few minutes, expensive
// for someone guessing passwords against a stolen key file.
var DefaultKDF = KDFParams{Time: 2, MemoryKiB: 64 << 10, Threads: 4}

// FastKDF is for tests only.
var FastKDF = KDFParams{Time: 1, MemoryKiB: 1 << 10, Threads: 1}

type keyFile struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Label   string    `json:"label,omitempty"`
	KDF     string    `json:"kdf"`
	Params  KDFParams `json:"params"`
	Salt    []byte    `json:"salt"`
	Data    []byte    `json:"data"` // AES-256-GCM(nonce‖ct‖tag) of the master key
}

// KeyInfo describes a key file for `drctl key list`.
type KeyInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Label   string    `json:"label,omitempty"`
	Current bool      `json:"current"`
}

const keysPrefix = "keys/"

func deriveKEK(password string, salt []byte, p KDFParams) (cipher.AEAD, error) {
	kek := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("init key cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

func wrapKey(master *chunk.Key, password, label string, p KDFParams) ([]byte, error) {
	if password == "" {
		return nil, errors.New("empty password: set DRCTL_PASSWORD or DRCTL_PASSWORD_FILE")
	}
	kf := keyFile{Version: 1, Created: time.Now().UTC(), Label: label, KDF: "argon2id", Params: p, Salt: make([]byte, 16)}
	if _, err := rand.Read(kf.Salt); err != nil {
		return nil, fmt.Errorf("generate salt: %w", err)
	}
	aead, err := deriveKEK(password, kf.Salt, p)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	kf.Data = aead.Seal(nonce, nonce, master.Bytes(), nil)
	return json.MarshalIndent(kf, "", "  ")
}

// unwrapKey returns the master key if password opens the key file, or
// (nil, nil) if it does not.
func unwrapKey(data []byte, password string) (*chunk.Key, error) {
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("parse key file: %w", err)
	}
	if kf.KDF != "argon2id" || kf.Params.Time == 0 || kf.Params.Threads == 0 {
		return nil, fmt.Errorf("key file uses unsupported kdf %q: %w", kf.KDF, ErrUnsupported)
	}
	aead, err := deriveKEK(password, kf.Salt, kf.Params)
	if err != nil {
		return nil, err
	}
	if len(kf.Data) < aead.NonceSize() {
		return nil, fmt.Errorf("key file data truncated: %w", ErrDamaged)
	}
	raw, err := aead.Open(nil, kf.Data[:aead.NonceSize()], kf.Data[aead.NonceSize():], nil)
	if err != nil {
		return nil, nil
	}
	return chunk.KeyFromBytes(raw)
}

// findKey tries password against every key file.
func findKey(ctx context.Context, t targets.Target, password string) (*chunk.Key, string, error) {
	var ids []string
	err := t.List(ctx, keysPrefix, func(oi targets.ObjectInfo) error {
		ids = append(ids, strings.TrimPrefix(oi.Key, keysPrefix))
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list keys: %w", err)
	}
	if len(ids) == 0 {
		return nil, "", fmt.Errorf("%s has a config but no key files: %w", t, ErrDamaged)
	}
	var damaged error
	for _, id := range ids {
		data, _, err := t.Get(ctx, keysPrefix+id)
		if err != nil {
			return nil, "", fmt.Errorf("read key %s: %w", id, err)
		}
		k, err := unwrapKey(data, password)
		if err != nil {
			damaged = fmt.Errorf("key %s: %w", id, err)
			continue
		}
		if k != nil {
			return k, id, nil
		}
	}
	if damaged != nil {
		return nil, "", fmt.Errorf("%w (and %v)", ErrWrongPassword, damaged)
	}
	return nil, "", ErrWrongPassword
}

// AddKey stores a new key file for password and returns its id.
func (r *Repository) AddKey(ctx context.Context, password, label string) (string, error) {
	data, err := wrapKey(r.codec.Key(), password, label, r.opts.KDF)
	if err != nil {
		return "", err
	}
	id := randomHex(16)
	if _, err := r.target.PutIfAbsent(ctx, keysPrefix+id, data); err != nil {
		return "", fmt.Errorf("save key %s: %w", id, err)
	}
	return id, nil
}

// Keys lists the key files.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := r.target.List(ctx, keysPrefix, func(oi targets.ObjectInfo) error {
		id := strings.TrimPrefix(oi.Key, keysPrefix)
		data, _, err := r.target.Get(ctx, oi.Key)
		if err != nil {
			return fmt.Errorf("read key %s: %w", id, err)
		}
		var kf keyFile
		if err := json.Unmarshal(data, &kf); err != nil {
			return fmt.Errorf("parse key %s: %w", id, err)
		}
		out = append(out, KeyInfo{ID: id, Created: kf.Created, Label: kf.Label, Current: id == r.keyID})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// RemoveKey deletes a key file. The key that opened the repository cannot
// be removed (that would lock out the caller by mistake); the id may be a
// unique prefix.
func (r *Repository) RemoveKey(ctx context.Context, idPrefix string) (string, error) {
	keys, err := r.Keys(ctx)
	if err != nil {
		return "", err
	}
	var match []KeyInfo
	for _, k := range keys {
		if strings.HasPrefix(k.ID, idPrefix) {
			match = append(match, k)
		}
	}
	switch {
	case len(match) == 0:
		return "", fmt.Errorf("no key with id %q (see drctl key list)", idPrefix)
	case len(match) > 1:
		return "", fmt.Errorf("key id prefix %q is ambiguous: give more digits", idPrefix)
	case match[0].Current:
		return "", fmt.Errorf("key %s is the one in use: open the repository with another password to remove it", match[0].ID)
	}
	if err := r.target.Delete(ctx, keysPrefix+match[0].ID); err != nil {
		return "", fmt.Errorf("remove key %s: %w", match[0].ID, err)
	}
	return match[0].ID, nil
}
