// Package chunk turns disk data into stored blobs: content-defined
// chunking, keyed blob ids, compression, authenticated encryption, packing
// blobs into pack objects, and the index that says where each blob lives.
package chunk

import (
	"encoding/hex"
	"fmt"
)

// ID names a blob (keyed hash of its plaintext) or a pack (hash of its
// bytes).
type ID [32]byte

// String is the lowercase hex form used in object names and manifests.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is the zero value (no blob).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText encodes the id as hex (used by JSON).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a hex id.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses the 64-digit hex form of an id.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("parse id %q: want %d hex digits, got %d", s, 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse id %q: %w", s, err)
	}
	return id, nil
}
