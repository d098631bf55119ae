package chunk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/drctl/drctl/chunk"
)

type testPack struct {
	bytes  []byte
	id     chunk.ID
	blobs  []chunk.PackedBlob
	plains [][]byte
}

// makePack packs n blobs of assorted sizes, types and compressibility.
func makePack(tb testing.TB, c *chunk.Codec, seed uint64, n int) testPack {
	tb.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	p := chunk.NewPacker(n * 2048)
	var tp testPack
	for i := range n {
		size := r.IntN(4096)
		if i%7 == 0 {
			size = 0
		}
		var plain []byte
		if i%2 == 0 {
			plain = randomBytes(seed*1000+uint64(i), size)
		} else {
			plain = bytes.Repeat([]byte{byte(i)}, size)
		}
		typ := chunk.DataBlob
		if i%3 == 0 {
			typ = chunk.MetaBlob
		}
		id := c.BlobID(plain)
		p.Add(typ, id, c.Encode(nil, plain, c.BlobID(plain)), len(plain))
		tp.plains = append(tp.plains, plain)
	}
	if p.Count() != n {
		tb.Fatalf("Count() = %d, want %d", p.Count(), n)
	}
	size := p.Size()
	tp.bytes, tp.id, tp.blobs = p.Finish(c)
	if len(tp.blobs) != n {
		tb.Fatalf("Finish listed %d blobs, want %d", len(tp.blobs), n)
	}
	if len(tp.bytes) <= size {
		tb.Fatalf("pack of %d bytes is not longer than its %d blob bytes", len(tp.bytes), size)
	}
	return tp
}

func TestPackRoundTrip(t *testing.T) {
	c := testCodec(t)
	for _, n := range []int{0, 1, 2, 500} {
		tp := makePack(t, c, uint64(n), n)
		if chunk.PackID(tp.bytes) != tp.id {
			t.Fatalf("%d blobs: PackID differs from the id Finish returned", n)
		}
		got, err := chunk.ParsePackHeader(c, tp.bytes)
		if err != nil {
			t.Fatalf("%d blobs: ParsePackHeader: %v", n, err)
		}
		if len(got) != len(tp.blobs) {
			t.Fatalf("%d blobs: header lists %d", n, len(got))
		}
		var end uint32
		for i, b := range got {
			if b != tp.blobs[i] {
				t.Fatalf("blob %d: header says %+v, Finish said %+v", i, b, tp.blobs[i])
			}
			if b.Offset != end {
				t.Fatalf("blob %d at offset %d, want %d (blobs back to back)", i, b.Offset, end)
			}
			end = b.Offset + b.Length
			if int(b.RawLength) != len(tp.plains[i]) {
				t.Fatalf("blob %d: RawLength %d, want %d", i, b.RawLength, len(tp.plains[i]))
			}
			plain, err := c.Decode(nil, tp.bytes[b.Offset:b.Offset+b.Length], b.ID)
			if err != nil {
				t.Fatalf("blob %d: Decode: %v", i, err)
			}
			if !bytes.Equal(plain, tp.plains[i]) {
				t.Fatalf("blob %d: content differs", i)
			}
		}
		wantType := func(i int) chunk.BlobType {
			if i%3 == 0 {
				return chunk.MetaBlob
			}
			return chunk.DataBlob
		}
		for i, b := range got {
			if b.Type != wantType(i) {
				t.Fatalf("blob %d: type %v, want %v", i, b.Type, wantType(i))
			}
		}
	}
}

func TestParsePackHeaderWrongKey(t *testing.T) {
	tp := makePack(t, testCodec(t), 1, 5)
	other := newCodec(t, randomKey(t))
	if _, err := chunk.ParsePackHeader(other, tp.bytes); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("wrong key: err = %v, want ErrAuth", err)
	}
}

func checkCorruptPackErr(t *testing.T, what string, blobs []chunk.PackedBlob, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: ParsePackHeader succeeded with %d blobs", what, len(blobs))
	}
	if !errors.Is(err, chunk.ErrCorruptPack) && !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("%s: err = %v, want ErrCorruptPack or ErrAuth", what, err)
	}
}

func parseNoPanic(t *testing.T, c *chunk.Codec, pack []byte) (blobs []chunk.PackedBlob, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("ParsePackHeader panicked on %d bytes: %v", len(pack), r)
		}
	}()
	return chunk.ParsePackHeader(c, pack)
}

func TestParsePackHeaderTruncated(t *testing.T) {
	c := testCodec(t)
	tp := makePack(t, c, 2, 6)
	for n := 0; n < len(tp.bytes); n++ {
		blobs, err := parseNoPanic(t, c, tp.bytes[:n])
		checkCorruptPackErr(t, "truncated", blobs, err)
	}
	// Losing bytes at the front keeps the header intact but moves it, so
	// the last blob no longer fits before it.
	for _, n := range []int{1, 2, 100, len(tp.bytes) - 100} {
		blobs, err := parseNoPanic(t, c, tp.bytes[n:])
		checkCorruptPackErr(t, "front cut", blobs, err)
	}
}

func TestParsePackHeaderFlippedHeader(t *testing.T) {
	c := testCodec(t)
	tp := makePack(t, c, 3, 4)
	hlen := int(binary.LittleEndian.Uint32(tp.bytes[len(tp.bytes)-4:]))
	hstart := len(tp.bytes) - 4 - hlen
	for bit := 8 * hstart; bit < 8*len(tp.bytes); bit++ {
		blobs, err := parseNoPanic(t, c, flipBit(tp.bytes, bit))
		checkCorruptPackErr(t, "flipped header bit", blobs, err)
	}
	// A flipped bit inside a blob is not the header's business: the header
	// parses, and the blob fails to decode.
	b := tp.blobs[1]
	bad := flipBit(tp.bytes, 8*int(b.Offset)+13)
	if _, err := chunk.ParsePackHeader(c, bad); err != nil {
		t.Fatalf("flipped blob byte: ParsePackHeader: %v", err)
	}
	if _, err := c.Decode(nil, bad[b.Offset:b.Offset+b.Length], b.ID); !errors.Is(err, chunk.ErrAuth) {
		t.Fatalf("flipped blob byte: Decode err = %v, want ErrAuth", err)
	}
}

func TestParsePackHeaderBogusTrailer(t *testing.T) {
	c := testCodec(t)
	tp := makePack(t, c, 4, 3)
	hlen := binary.LittleEndian.Uint32(tp.bytes[len(tp.bytes)-4:])
	n := uint32(len(tp.bytes))
	for _, v := range []uint32{0, 1, chunk.Overhead - 1, chunk.Overhead, hlen - 1, hlen + 1, n - 4, n - 3, n, n + 1, 1 << 31, 1<<32 - 1} {
		pack := append([]byte(nil), tp.bytes...)
		binary.LittleEndian.PutUint32(pack[len(pack)-4:], v)
		blobs, err := parseNoPanic(t, c, pack)
		checkCorruptPackErr(t, "trailer length", blobs, err)
	}
}

func TestParsePackHeaderShortInputs(t *testing.T) {
	c := testCodec(t)
	for n := 0; n < 4+chunk.Overhead+8; n++ {
		for _, fill := range []byte{0, 0xff} {
			blobs, err := parseNoPanic(t, c, bytes.Repeat([]byte{fill}, n))
			checkCorruptPackErr(t, "short input", blobs, err)
		}
	}
}

// sealedPack builds a pack from body bytes and an arbitrary header
// plaintext, sealed with the codec's key: what a buggy or hostile writer
// holding the key could produce.
func sealedPack(c *chunk.Codec, body, hdr []byte) []byte {
	sealed := c.Key().Seal(nil, hdr)
	pack := append(append([]byte(nil), body...), sealed...)
	return binary.LittleEndian.AppendUint32(pack, uint32(len(sealed)))
}

func headerEntry(typ chunk.BlobType, id chunk.ID, off, length, raw uint32) []byte {
	e := append([]byte{byte(typ)}, id[:]...)
	e = binary.LittleEndian.AppendUint32(e, off)
	e = binary.LittleEndian.AppendUint32(e, length)
	return binary.LittleEndian.AppendUint32(e, raw)
}

func TestParsePackHeaderBadSealedHeader(t *testing.T) {
	c := testCodec(t)
	body := make([]byte, 1000)
	ok := headerEntry(chunk.DataBlob, chunk.ID{1}, 0, 1000, 5000)
	tests := []struct {
		name string
		hdr  []byte
	}{
		{"empty header", nil},
		{"version 0", append([]byte{0}, ok...)},
		{"version 2", append([]byte{2}, ok...)},
		{"partial entry", append([]byte{1}, ok[:44]...)},
		{"entry and a half", append(append([]byte{1}, ok...), ok[:20]...)},
		{"blob past header", append([]byte{1}, headerEntry(chunk.DataBlob, chunk.ID{2}, 1, 1000, 1)...)},
		{"blob at header", append([]byte{1}, headerEntry(chunk.DataBlob, chunk.ID{2}, 1000, 1, 1)...)},
		{"max offset and length", append([]byte{1}, headerEntry(chunk.DataBlob, chunk.ID{3}, 1<<32-1, 1<<32-1, 0)...)},
		{"wrapping offset", append([]byte{1}, headerEntry(chunk.DataBlob, chunk.ID{3}, 1<<32-1, 2, 0)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blobs, err := parseNoPanic(t, c, sealedPack(c, body, tc.hdr))
			if !errors.Is(err, chunk.ErrCorruptPack) {
				t.Fatalf("err = %v (blobs %v), want ErrCorruptPack", err, blobs)
			}
		})
	}
	// The well-formed header, for contrast, parses.
	blobs, err := chunk.ParsePackHeader(c, sealedPack(c, body, append([]byte{1}, ok...)))
	if err != nil || len(blobs) != 1 || blobs[0].Length != 1000 || blobs[0].RawLength != 5000 {
		t.Fatalf("valid hand-made header: %v, %+v", err, blobs)
	}
}

func TestBlobTypeString(t *testing.T) {
	for typ, want := range map[chunk.BlobType]string{chunk.DataBlob: "data", chunk.MetaBlob: "meta", 0: "blobtype(0)", 200: "blobtype(200)"} {
		if got := typ.String(); got != want {
			t.Errorf("BlobType(%d).String() = %q, want %q", uint8(typ), got, want)
		}
	}
}
