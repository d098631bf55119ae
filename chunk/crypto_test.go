package chunk_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"

	"github.com/drctl/drctl/chunk"
)

func TestKeySealOpenRoundTrip(t *testing.T) {
	k := randomKey(t)
	for _, n := range []int{0, 1, 15, 16, 17, 255, 4096, 1 << 20} {
		plain := randomBytes(uint64(n), n)
		sealed := k.Seal(nil, plain)
		if len(sealed) != n+chunk.Overhead {
			t.Fatalf("len(Seal(%d bytes)) = %d, want %d", n, len(sealed), n+chunk.Overhead)
		}
		got, err := k.Open(nil, sealed)
		if err != nil {
			t.Fatalf("Open(%d bytes): %v", n, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("Open(Seal(%d bytes)) differs", n)
		}
		if again := k.Seal(nil, plain); bytes.Equal(again, sealed) {
			t.Fatalf("two Seals of %d bytes gave the same ciphertext: nonce reused", n)
		}
	}
}

func TestKeySealOpenAppend(t *testing.T) {
	k := randomKey(t)
	plain := []byte("payload")
	prefix := []byte("prefix:")
	sealed := k.Seal(append([]byte(nil), prefix...), plain)
	if !bytes.HasPrefix(sealed, prefix) {
		t.Fatalf("Seal did not append to dst: %q", sealed)
	}
	got, err := k.Open(append([]byte(nil), prefix...), sealed[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]byte(nil), prefix...), plain...); !bytes.Equal(got, want) {
		t.Fatalf("Open did not append to dst: got %q want %q", got, want)
	}
}

func TestKeyOpenTamper(t *testing.T) {
	k := randomKey(t)
	for _, n := range []int{0, 1, 40} {
		sealed := k.Seal(nil, randomBytes(9, n))
		for bit := 0; bit < 8*len(sealed); bit++ {
			if _, err := k.Open(nil, flipBit(sealed, bit)); !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("%d-byte plaintext, bit %d flipped: err = %v, want ErrAuth", n, bit, err)
			}
		}
	}
}

func TestKeyOpenTruncatedOrExtended(t *testing.T) {
	k := randomKey(t)
	sealed := k.Seal(nil, randomBytes(10, 100))
	for n := 0; n < len(sealed); n++ {
		if _, err := k.Open(nil, sealed[:n]); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("first %d of %d bytes: err = %v, want ErrAuth", n, len(sealed), err)
		}
		if _, err := k.Open(nil, sealed[n+1:]); !errors.Is(err, chunk.ErrAuth) {
			t.Fatalf("dropped first %d bytes: err = %v, want ErrAuth", n+1, err)
		}
	}
	if _, err := k.Open(nil, append(append([]byte(nil), sealed...), 0)); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("extra trailing byte: err = %v, want ErrAuth", err)
	}
	if _, err := k.Open(nil, nil); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("nil input: err = %v, want ErrAuth", err)
	}
}

func TestKeyOpenWrongKey(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	sealed := k1.Seal(nil, []byte("secret"))
	if _, err := k2.Open(nil, sealed); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("wrong key: err = %v, want ErrAuth", err)
	}
	// Same encryption half, different MAC half: still opens (the MAC half
	// only keys blob ids).
	b := k1.Bytes()
	b[40] ^= 1
	k3, err := chunk.KeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k3.Open(nil, sealed); err != nil {
		t.Fatalf("key with the same encryption half: %v", err)
	}
}

func TestKeyFromBytes(t *testing.T) {
	for _, n := range []int{0, 1, 32, 63, 65, 128} {
		if _, err := chunk.KeyFromBytes(make([]byte, n)); err == nil {
			t.Errorf("KeyFromBytes(%d bytes) succeeded", n)
		}
	}
	orig := randomKey(t)
	b := orig.Bytes()
	if len(b) != 64 || !bytes.Equal(b[:32], orig.Encrypt[:]) || !bytes.Equal(b[32:], orig.MAC[:]) {
		t.Fatalf("Bytes() = %x: want encrypt half then MAC half", b)
	}
	k, err := chunk.KeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Bytes(), b) {
		t.Fatal("KeyFromBytes(Bytes()) does not round trip")
	}
	b[0] ^= 0xff // the key must not alias its input
	if k.Encrypt[0] == b[0] {
		t.Fatal("KeyFromBytes aliases its argument")
	}
	sealed := orig.Seal(nil, []byte("x"))
	if got, err := k.Open(nil, sealed); err != nil || string(got) != "x" {
		t.Fatalf("rebuilt key cannot open: %q, %v", got, err)
	}
	data := []byte("blob")
	if orig.BlobID(data) != k.BlobID(data) {
		t.Fatal("rebuilt key gives other blob ids")
	}
}

func TestNewRandomKeyDistinct(t *testing.T) {
	a, b := randomKey(t), randomKey(t)
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two random keys are equal")
	}
	if a.Encrypt == a.MAC {
		t.Fatal("encrypt and MAC halves are equal")
	}
}

func TestBlobID(t *testing.T) {
	k := randomKey(t)
	for _, n := range []int{0, 1, 63, 64, 65, 4096, 1 << 20} {
		data := randomBytes(uint64(n)+100, n)
		m := hmac.New(sha256.New, k.MAC[:])
		m.Write(data)
		var want chunk.ID
		copy(want[:], m.Sum(nil))
		if got := k.BlobID(data); got != want {
			t.Fatalf("BlobID(%d bytes) = %v, want HMAC-SHA-256 %v", n, got, want)
		}
		if got := k.BlobID(data); got != want {
			t.Fatalf("second BlobID(%d bytes) differs: pooled hash not reset", n)
		}
		if plain := chunk.ID(sha256.Sum256(data)); plain == want {
			t.Fatal("blob id equals the unkeyed SHA-256")
		}
	}
	other := randomKey(t)
	if k.BlobID([]byte("x")) == other.BlobID([]byte("x")) {
		t.Fatal("blob ids do not depend on the key")
	}
}

func TestBlobIDConcurrent(t *testing.T) {
	k := randomKey(t)
	inputs := make([][]byte, 16)
	want := make([]chunk.ID, len(inputs))
	for i := range inputs {
		inputs[i] = randomBytes(uint64(i), 1000+i*37)
		want[i] = k.BlobID(inputs[i])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for r := range 200 {
				i := (g + r) % len(inputs)
				if k.BlobID(inputs[i]) != want[i] {
					errs <- "concurrent BlobID gave a different id"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
