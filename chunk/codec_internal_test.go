package chunk

import (
	"bytes"
	"errors"
	"testing"
)

// sealBlob builds a stored blob from a mode byte and a payload the way
// Encode lays one out, so that tests can make blobs that authenticate but
// that Encode would never write: what a buggy writer holding the key could
// leave in a repository.
func sealBlob(k *Key, mode byte, payload []byte) []byte {
	return k.seal([]byte{mode}, payload, associatedData(mode, ID{}))
}

func internalTestCodec(t *testing.T) *Codec {
	t.Helper()
	k, err := NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The layout sealBlob assumes is the one Encode writes.
func TestSealBlobMatchesEncode(t *testing.T) {
	c := internalTestCodec(t)
	for _, plain := range [][]byte{[]byte("raw"), bytes.Repeat([]byte("z"), 5000)} {
		stored := c.Encode(nil, plain, ID{})
		mode := stored[0]
		payload := plain
		if mode == modeZstd {
			payload = c.enc.EncodeAll(plain, nil)
		}
		got, err := c.Decode(nil, sealBlob(c.key, mode, payload), ID{})
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("mode %d: hand-sealed blob does not decode: %v", mode, err)
		}
	}
}

// Blobs that authenticate but are not valid codec output give errors, not
// panics.
func TestCodecDecodeBadPayload(t *testing.T) {
	c := internalTestCodec(t)
	zstdHeader1TiB := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0}
	tests := []struct {
		name    string
		mode    byte
		payload []byte
		wantErr error // nil: any error
	}{
		{"unknown mode", 7, []byte{1, 2, 3}, ErrAuth},
		{"unknown mode, empty", 255, nil, ErrAuth},
		{"zstd garbage", modeZstd, bytes.Repeat([]byte{0xa5, 0x17, 0x00}, 40), nil},
		{"zstd frame claiming 1 TiB", modeZstd, zstdHeader1TiB, nil},
		{"zstd frame cut short", modeZstd, c.enc.EncodeAll(bytes.Repeat([]byte("abc"), 1000), nil)[:20], nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.Decode(nil, sealBlob(c.key, tc.mode, tc.payload), ID{})
			if err == nil {
				t.Fatalf("Decode succeeded with %d bytes", len(out))
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	// An empty zstd payload is a valid empty blob.
	if out, err := c.Decode(nil, sealBlob(c.key, modeZstd, nil), ID{}); err != nil || len(out) != 0 {
		t.Fatalf("empty zstd payload: %d bytes, %v", len(out), err)
	}
}

// The mode byte is authenticated: switching it breaks the blob.
func TestCodecModeByteAuthenticated(t *testing.T) {
	c := internalTestCodec(t)
	for _, plain := range [][]byte{[]byte("incompressible?"), bytes.Repeat([]byte("ab"), 1000)} {
		stored := c.Encode(nil, plain, c.BlobID(plain))
		for _, m := range []byte{modeRaw, modeZstd, 2} {
			if m == stored[0] {
				continue
			}
			bad := bytes.Clone(stored)
			bad[0] = m
			if _, err := c.Decode(nil, bad, c.BlobID(plain)); !errors.Is(err, ErrAuth) {
				t.Fatalf("mode %d → %d: err = %v, want ErrAuth", stored[0], m, err)
			}
		}
	}
}
