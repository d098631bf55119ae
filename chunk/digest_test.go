package chunk_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/drctl/drctl/chunk"
)

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 4096, 64 << 10, 64<<10 + 1, 200 << 10} {
		b := make([]byte, n)
		if !chunk.IsZero(b) {
			t.Fatalf("IsZero(%d zero bytes) = false", n)
		}
		for _, pos := range []int{0, n / 2, n - 1, 64 << 10} {
			if pos < 0 || pos >= n {
				continue
			}
			b[pos] = 1
			if chunk.IsZero(b) {
				t.Fatalf("IsZero(%d bytes, byte %d set) = true", n, pos)
			}
			b[pos] = 0
		}
	}
}

func TestBlockDigester(t *testing.T) {
	k := testKey(t)
	d1, d2 := k.NewBlockDigester(), k.NewBlockDigester()
	block := randomBytes(1, 4096)
	sum := d1.Digest(block)
	if sum == 0 || sum&1 == 0 {
		t.Fatalf("digest of a non-zero block = %#x: want non-zero (low bit set)", sum)
	}
	if d1.Digest(block) != sum || d2.Digest(block) != sum {
		t.Fatal("digest is not deterministic for one key")
	}
	for _, bit := range []int{0, 7, 8 * 2048, 8*4096 - 1} {
		if d1.Digest(flipBit(block, bit)) == sum {
			t.Fatalf("flipping bit %d did not change the digest", bit)
		}
	}
	if d1.Digest(make([]byte, 4096)) != 0 || d1.Digest(nil) != 0 {
		t.Fatal("digest of an all-zero block is not 0")
	}
	one := make([]byte, 4096)
	one[4095] = 1
	if d1.Digest(one) == 0 {
		t.Fatal("block with one set byte has digest 0")
	}
	// Keyed by the MAC half of the key.
	b := k.Bytes()
	b[40] ^= 1
	other, err := chunk.KeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if other.NewBlockDigester().Digest(block) == sum {
		t.Fatal("digest does not depend on the key")
	}
	// A block digest is not a truncated blob id.
	if id := k.BlobID(block); binary.LittleEndian.Uint64(id[:8])|1 == sum {
		t.Fatal("block digest equals the blob id prefix")
	}
}

func TestNewPackerBuf(t *testing.T) {
	c := testCodec(t)
	buf := []byte("stale bytes from an earlier pack")
	p := chunk.NewPackerBuf(buf)
	plain := []byte("blob")
	p.Add(chunk.DataBlob, c.BlobID(plain), c.Encode(nil, plain, c.BlobID(plain)), len(plain))
	pack, _, blobs := p.Finish(c)
	got, err := chunk.ParsePackHeader(c, pack)
	if err != nil || len(got) != 1 || got[0] != blobs[0] || got[0].Offset != 0 {
		t.Fatalf("pack in a reused buffer: %v, %+v", err, got)
	}
	out, err := c.Decode(nil, pack[got[0].Offset:got[0].Offset+got[0].Length], got[0].ID)
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("blob from a reused buffer: %q, %v", out, err)
	}
}
