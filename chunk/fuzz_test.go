package chunk_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/drctl/drctl/chunk"
)

// The fuzz targets take a flag: false hands the input to the parser as it
// is (it must fail authentication unless it is an untouched seed); true
// seals the input first with the fixed test key, so that the fuzzer
// reaches the parsing code behind the authentication, as only a key holder
// could. Neither may panic.
//
// Run one at a time, for example
//
//	go test -run '^$' -fuzz '^FuzzDecodeIndexFile$' -fuzztime 60s -fuzzminimizetime 5s ./chunk/
//
// The short minimisation time matters: Go's minimiser tries removing every
// range of bytes of each new input, and on a 2 KiB input that holds the
// workers (the log shows 0 execs/sec) for the default full minute.

// Seeds are kept small for the same reason.

func FuzzDecodeIndexFile(f *testing.F) {
	c := testCodec(f)
	for _, file := range sampleIndexFiles() {
		if len(file.Packs) > 3 {
			continue
		}
		sealed := chunk.EncodeIndexFile(c, file)
		plain, err := c.Open(sealed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed, false)
		f.Add(plain, true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)
	f.Add([]byte{1, 1}, true)
	f.Add(append([]byte{1, 1}, make([]byte, 32)...), true)
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		in := data
		if seal {
			in = chunk.SealRaw(c, data)
		}
		file, err := chunk.DecodeIndexFile(c, in)
		if err != nil {
			if !seal && !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("unauthenticated input: err = %v, want ErrAuth", err)
			}
			return
		}
		// Whatever parses must survive a round trip unchanged.
		again, err := chunk.DecodeIndexFile(c, chunk.EncodeIndexFile(c, file))
		if err != nil {
			t.Fatalf("re-encoded index does not parse: %v", err)
		}
		assertIndexFilesEqual(t, again, file)
	})
}

func FuzzParsePackHeader(f *testing.F) {
	c := testCodec(f)
	for _, n := range []int{0, 1, 3, 8} {
		tp := makeTinyPack(c, n)
		hlen := int(binary.LittleEndian.Uint32(tp.bytes[len(tp.bytes)-4:]))
		hstart := len(tp.bytes) - 4 - hlen
		hdr, err := c.Key().Open(nil, tp.bytes[hstart:len(tp.bytes)-4])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tp.bytes, []byte(nil), false)
		f.Add(tp.bytes[:hstart], hdr, true)
	}
	f.Add([]byte{}, []byte{}, false)
	f.Add([]byte{}, []byte{1}, true)
	f.Add(make([]byte, 10), headerEntry(chunk.DataBlob, chunk.ID{}, 0, 10, 10), true)
	f.Fuzz(func(t *testing.T, pack, hdr []byte, seal bool) {
		if seal {
			pack = sealedPack(c, pack, hdr)
		}
		blobs, err := chunk.ParsePackHeader(c, pack)
		if err != nil {
			if !errors.Is(err, chunk.ErrCorruptPack) && !errors.Is(err, chunk.ErrAuth) {
				t.Fatalf("err = %v, want ErrCorruptPack or ErrAuth", err)
			}
			return
		}
		hlen := int(binary.LittleEndian.Uint32(pack[len(pack)-4:]))
		hstart := len(pack) - 4 - hlen
		for i, b := range blobs {
			if uint64(b.Offset)+uint64(b.Length) > uint64(hstart) {
				t.Fatalf("blob %d at %d+%d reaches into the header at %d", i, b.Offset, b.Length, hstart)
			}
		}
		if seal && len(blobs) != (len(hdr)-1)/45 {
			t.Fatalf("%d-byte header gave %d blobs", len(hdr), len(blobs))
		}
	})
}

// makeTinyPack packs n blobs of a few bytes each.
func makeTinyPack(c *chunk.Codec, n int) testPack {
	p := chunk.NewPacker(0)
	for i := range n {
		plain := []byte{byte(i), byte(i * 3)}[:i%3]
		p.Add(chunk.BlobType(1+i%2), c.BlobID(plain), c.Encode(nil, plain, c.BlobID(plain)), len(plain))
	}
	var tp testPack
	tp.bytes, tp.id, tp.blobs = p.Finish(c)
	return tp
}
