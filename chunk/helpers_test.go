package chunk_test

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/drctl/drctl/chunk"
)

// fixedKeyBytes is a constant master key. Tests and fuzz targets use it so
// that sealed inputs stay valid from one run to the next (a fuzz corpus of
// sealed index files would otherwise never authenticate again).
func fixedKeyBytes() []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(i*37 + 11)
	}
	return b
}

func testKey(tb testing.TB) *chunk.Key {
	tb.Helper()
	k, err := chunk.KeyFromBytes(fixedKeyBytes())
	if err != nil {
		tb.Fatalf("KeyFromBytes: %v", err)
	}
	return k
}

func randomKey(tb testing.TB) *chunk.Key {
	tb.Helper()
	k, err := chunk.NewRandomKey()
	if err != nil {
		tb.Fatalf("NewRandomKey: %v", err)
	}
	return k
}

func newCodec(tb testing.TB, k *chunk.Key) *chunk.Codec {
	tb.Helper()
	c, err := chunk.NewCodec(k)
	if err != nil {
		tb.Fatalf("NewCodec: %v", err)
	}
	return c
}

func testCodec(tb testing.TB) *chunk.Codec { return newCodec(tb, testKey(tb)) }

// randomBytes returns n pseudo-random bytes, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func randomID(r *rand.Rand) chunk.ID {
	var id chunk.ID
	for i := 0; i < len(id); i += 8 {
		binary.LittleEndian.PutUint64(id[i:], r.Uint64())
	}
	return id
}

func flipBit(b []byte, bit int) []byte {
	out := append([]byte(nil), b...)
	out[bit/8] ^= 1 << (bit % 8)
	return out
}

// findIrreducible returns the first irreducible polynomial at or above
// start with the same degree (start's lowest bit is forced on: an
// irreducible polynomial other than x has a constant term).
func findIrreducible(tb testing.TB, start chunk.Pol) chunk.Pol {
	tb.Helper()
	deg := start.Deg()
	for p := start | 1; p.Deg() == deg; p += 2 {
		if p.Irreducible() {
			return p
		}
	}
	tb.Fatalf("no irreducible polynomial of degree %d above %v", deg, start)
	return 0
}

var (
	polOnce    sync.Once
	pol1, pol2 chunk.Pol
)

// testPols returns two fixed irreducible polynomials of degree 53, the
// degree the chunker needs, found by a deterministic search.
func testPols(tb testing.TB) (chunk.Pol, chunk.Pol) {
	tb.Helper()
	polOnce.Do(func() {
		pol1 = findIrreducible(tb, 1<<53|0x000a5c3e1b79d4f1)
		pol2 = findIrreducible(tb, pol1+2)
	})
	return pol1, pol2
}

func testPol(tb testing.TB) chunk.Pol {
	p, _ := testPols(tb)
	return p
}

// syntheticFS deterministically generates n bytes resembling what a VM
// disk holds: text (logs, configuration, source), machine-code-like binary,
// runs of zeros (unallocated or zeroed blocks) and already-compressed
// regions (random bytes), in extents of 4 KiB to 128 KiB.
func syntheticFS(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := newFSGen(r)
	out := make([]byte, 0, n+256<<10)
	for len(out) < n {
		size := 4096 * (1 + r.IntN(32))
		switch p := r.IntN(100); {
		case p < 40:
			out = g.text(out, size)
		case p < 75:
			out = g.binary(out, size)
		case p < 88:
			out = append(out, make([]byte, size)...)
		default:
			start := len(out)
			out = append(out, make([]byte, size)...)
			for i := start; i+8 <= len(out); i += 8 {
				binary.LittleEndian.PutUint64(out[i:], r.Uint64())
			}
		}
	}
	return out[:n]
}

type fsGen struct {
	r      *rand.Rand
	vocab  [][]byte
	opcode [][]byte
}

func newFSGen(r *rand.Rand) *fsGen {
	syl := []string{"ka", "ro", "mi", "te", "su", "lan", "dor", "vex", "io", "net",
		"sys", "usr", "lib", "cfg", "log", "err", "ok", "pa", "th", "on", "ar",
		"el", "in", "st", "de", "ver", "mod", "ule", "con", "fig", "ser", "vice"}
	g := &fsGen{r: r}
	for range 1024 {
		var w []byte
		for range 1 + r.IntN(4) {
			w = append(w, syl[r.IntN(len(syl))]...)
		}
		g.vocab = append(g.vocab, w)
	}
	for range 96 {
		op := make([]byte, 1+r.IntN(6))
		for i := range op {
			op[i] = byte(r.Uint32())
		}
		g.opcode = append(g.opcode, op)
	}
	return g
}

// word picks a vocabulary word with a skewed (roughly Zipf-like)
// distribution.
func (g *fsGen) word() []byte {
	u := g.r.Float64()
	return g.vocab[int(float64(len(g.vocab))*math.Pow(u, 3))]
}

func (g *fsGen) text(out []byte, size int) []byte {
	end := len(out) + size
	r := g.r
	for len(out) < end {
		if r.IntN(2) == 0 {
			out = append(out, "2025-03-"...)
			out = appendPad2(out, 1+r.IntN(28))
			out = append(out, 'T')
			out = appendPad2(out, r.IntN(24))
			out = append(out, ':')
			out = appendPad2(out, r.IntN(60))
			out = append(out, ':')
			out = appendPad2(out, r.IntN(60))
			out = append(out, " host"...)
			out = strconv.AppendInt(out, int64(r.IntN(8)), 10)
			out = append(out, ' ')
			out = append(out, g.word()...)
			out = append(out, '[')
			out = strconv.AppendInt(out, int64(100+r.IntN(30000)), 10)
			out = append(out, "]: "...)
		}
		for i, n := 0, 4+r.IntN(11); i < n; i++ {
			if i > 0 {
				out = append(out, ' ')
			}
			out = append(out, g.word()...)
			if r.IntN(8) == 0 {
				out = append(out, '=')
				out = strconv.AppendInt(out, int64(r.IntN(5000)), 10)
			}
		}
		out = append(out, '\n')
	}
	return out[:end]
}

func appendPad2(b []byte, v int) []byte {
	if v < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(v), 10)
}

func (g *fsGen) binary(out []byte, size int) []byte {
	end := len(out) + size
	r := g.r
	for len(out) < end {
		out = append(out, g.opcode[int(float64(len(g.opcode))*math.Pow(r.Float64(), 2))]...)
		switch p := r.IntN(10); {
		case p < 3:
			out = append(out, byte(r.IntN(64)))
		case p < 5: // 32-bit address near a few bases
			out = binary.LittleEndian.AppendUint32(out, 0x00400000+uint32(r.IntN(4))<<16+uint32(r.IntN(1<<14))*4)
		case p < 6: // 64-bit pointer
			out = binary.LittleEndian.AppendUint64(out, 0x00007f3a00000000+uint64(r.IntN(1<<20))*8)
		case p < 7 && r.IntN(20) == 0: // embedded string table entry
			out = append(out, g.word()...)
			out = append(out, 0)
		}
	}
	return out[:end]
}
