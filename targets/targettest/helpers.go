package targettest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/drctl/drctl/targets"
)

// randomBytes returns n pseudo-random bytes; seed makes them reproducible.
func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	s[2], s[3] = byte(seed>>16), byte(seed>>24)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

func put(t *testing.T, tg targets.Target, key string, data []byte) targets.ObjectInfo {
	t.Helper()
	info, err := tg.Put(t.Context(), key, data)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Size != int64(len(data)) || info.ETag == "" || info.Key != key {
		t.Fatalf("Put(%q) = %+v, want key, size %d and a tag", key, info, len(data))
	}
	return info
}

// mustHold checks that key holds exactly want.
func mustHold(t *testing.T, tg targets.Target, key string, want []byte) targets.ObjectInfo {
	t.Helper()
	got, info, err := tg.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q): %d bytes differ from the %d expected", key, len(got), len(want))
	}
	if info.Size != int64(len(want)) || info.Key != key {
		t.Fatalf("Get(%q) info = %+v, want size %d", key, info, len(want))
	}
	return info
}

func mustBe(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func mustNotFound(t *testing.T, tg targets.Target, key string) {
	t.Helper()
	_, _, err := tg.Get(t.Context(), key)
	mustBe(t, "Get("+key+")", err, targets.ErrNotFound)
}

// listAll collects a listing, checking that it is sorted and unique.
func listAll(t *testing.T, tg targets.Target, prefix string) []targets.ObjectInfo {
	t.Helper()
	var out []targets.ObjectInfo
	err := tg.List(t.Context(), prefix, func(oi targets.ObjectInfo) error {
		if n := len(out); n > 0 && out[n-1].Key >= oi.Key {
			t.Errorf("List(%q): %q after %q: not sorted or not unique", prefix, oi.Key, out[n-1].Key)
		}
		out = append(out, oi)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return out
}
