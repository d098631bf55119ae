package chunk_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	mbits "math/bits"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/drctl/drctl/chunk"
)

// Benchmark data. Two corpora:
//
//   - random: incompressible bytes (encrypted or already-compressed disk
//     content), generated.
//   - fs: filesystem-like bytes. By default the first files (in walk order,
//     at most 1 MiB from each) of the system's executable and shared-data
//     directories, interleaved in 1 MiB stripes so that any window mixes
//     binaries and text; what those directories cannot supply is filled
//     with syntheticFS. Set DRCTL_BENCH_DATA=synthetic to use generated data
//     only (reproducible across machines).
//
// Both corpora are built once, outside every benchmark's timer.

const corpusSize = 64 << 20

var (
	randomCorpus = sync.OnceValue(func() []byte { return randomBytes(42, corpusSize) })
	fsCorpus     = sync.OnceValue(func() []byte { return loadFSCorpus(corpusSize) })
)

type corpus struct {
	name string
	data func() []byte
}

var corpora = []corpus{{"random", randomCorpus}, {"fs", fsCorpus}}

func loadFSCorpus(n int) []byte {
	if os.Getenv("DRCTL_BENCH_DATA") == "synthetic" {
		return syntheticFS(43, n)
	}
	bin := readTree("/usr/bin", n/2)
	share := readTree("/usr/share", n/2)
	const stripe = 1 << 20
	out := make([]byte, 0, n)
	for len(bin) > 0 || len(share) > 0 {
		k := min(stripe, len(bin))
		out, bin = append(out, bin[:k]...), bin[k:]
		k = min(stripe, len(share))
		out, share = append(out, share[:k]...), share[k:]
	}
	if len(out) < n {
		out = append(out, syntheticFS(44, n-len(out))...)
	}
	return out[:n]
}

// readTree reads up to limit bytes of the regular files under root, at most
// 1 MiB from each file; unreadable entries are skipped.
func readTree(root string, limit int) []byte {
	out := make([]byte, 0, limit)
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if len(out) >= limit {
			return fs.SkipAll
		}
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return nil
		}
		defer f.Close()
		want := min(limit-len(out), 1<<20)
		n, _ := io.ReadFull(f, out[len(out):len(out)+want])
		out = out[:len(out)+n]
		return nil
	})
	return out
}

// benchParams gives chunks of the stated mean size: the chunker looks for
// a cut only after MinSize and then finds one every 2^AverageBits bytes on
// average, so MinSize = avg/2 with 2^AverageBits = avg/2 averages avg.
// MaxSize = 8×avg is practically never reached on real data.
func benchParams(tb testing.TB, avg int) chunk.Params {
	bits := mbits.Len(uint(avg/2)) - 1
	return chunk.Params{Pol: testPol(tb), MinSize: uint(avg / 2), MaxSize: uint(8 * avg), AverageBits: bits}
}

var chunkSizes = []int{64 << 10, 256 << 10, 512 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkChunker measures content-defined chunking alone over 32 MiB per
// iteration and reports the mean chunk size reached.
func BenchmarkChunker(b *testing.B) {
	for _, avg := range chunkSizes {
		for _, cp := range corpora {
			b.Run("avg="+sizeName(avg)+"/"+cp.name, func(b *testing.B) {
				data := cp.data()[:32<<20]
				p := benchParams(b, avg)
				c := chunk.NewChunker(p)
				buf := make([]byte, p.MaxSize)
				rd := bytes.NewReader(nil)
				b.SetBytes(int64(len(data)))
				chunks, iters := 0, 0
				for b.Loop() {
					iters++
					rd.Reset(data)
					c.Reset(rd)
					for {
						_, err := c.Next(buf)
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
						chunks++
					}
				}
				b.ReportMetric(float64(len(data))*float64(iters)/float64(chunks), "B/chunk")
			})
		}
	}
}

// BenchmarkBlobID is the keyed blob id (HMAC-SHA-256). Its speed does not
// depend on the content.
func BenchmarkBlobID(b *testing.B) {
	k := testKey(b)
	for _, n := range []int{4 << 10, 1 << 20} {
		b.Run(sizeName(n), func(b *testing.B) {
			data := randomCorpus()[:16<<20]
			blocks := len(data) / n
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				off := (i % blocks) * n
				k.BlobID(data[off : off+n])
				i++
			}
		})
	}
}

// BenchmarkSHA256Block4K is plain SHA-256 over one 4 KiB block, the unit
// of change detection; compare with BenchmarkBlobID/4KiB and
// BenchmarkBlockDigest.
func BenchmarkSHA256Block4K(b *testing.B) {
	data := randomCorpus()[:16<<20]
	const n = 4 << 10
	blocks := len(data) / n
	b.SetBytes(n)
	i := 0
	for b.Loop() {
		off := (i % blocks) * n
		sha256.Sum256(data[off : off+n])
		i++
	}
}

// BenchmarkBlockDigest is the keyed 4 KiB block digest of disk maps.
func BenchmarkBlockDigest(b *testing.B) {
	d := testKey(b).NewBlockDigester()
	data := randomCorpus()[:16<<20]
	const n = 4 << 10
	blocks := len(data) / n
	b.SetBytes(n)
	i := 0
	for b.Loop() {
		off := (i % blocks) * n
		d.Digest(data[off : off+n])
		i++
	}
}

// blobs cuts the first 16 MiB of a corpus into 1 MiB blobs.
func blobs1MiB(data []byte) [][]byte {
	var out [][]byte
	for off := 0; off < 16<<20; off += 1 << 20 {
		out = append(out, data[off:off+1<<20])
	}
	return out
}

// BenchmarkCodecEncode is compress-if-it-helps plus encryption of 1 MiB
// blobs; "stored/raw" is the size ratio reached.
func BenchmarkCodecEncode(b *testing.B) {
	c := testCodec(b)
	for _, cp := range corpora {
		b.Run(cp.name, func(b *testing.B) {
			blobs := blobs1MiB(cp.data())
			dst := make([]byte, 0, 2<<20)
			b.SetBytes(1 << 20)
			var stored, raw int
			i := 0
			for b.Loop() {
				dst = c.Encode(dst[:0], blobs[i%len(blobs)], c.BlobID(blobs[i%len(blobs)]))
				stored += len(dst)
				raw += 1 << 20
				i++
			}
			b.ReportMetric(float64(stored)/float64(raw), "stored/raw")
		})
	}
}

// BenchmarkCodecEncodeParallel runs Encode from GOMAXPROCS goroutines on
// one Codec, as a pipeline with several workers would; MB/s is the
// aggregate.
func BenchmarkCodecEncodeParallel(b *testing.B) {
	c := testCodec(b)
	blobs := blobs1MiB(fsCorpus())
	b.SetBytes(1 << 20)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, 2<<20)
		i := 0
		for pb.Next() {
			dst = c.Encode(dst[:0], blobs[i%len(blobs)], c.BlobID(blobs[i%len(blobs)]))
			i++
		}
	})
}

// BenchmarkCodecDecode is decryption, decompression and the id check of
// 1 MiB blobs, as a restore does them.
func BenchmarkCodecDecode(b *testing.B) {
	c := testCodec(b)
	for _, cp := range corpora {
		b.Run(cp.name, func(b *testing.B) {
			blobs := blobs1MiB(cp.data())
			stored := make([][]byte, len(blobs))
			ids := make([]chunk.ID, len(blobs))
			for i, bl := range blobs {
				stored[i] = c.Encode(nil, bl, c.BlobID(bl))
				ids[i] = c.BlobID(bl)
			}
			dst := make([]byte, 0, 2<<20)
			b.SetBytes(1 << 20)
			i := 0
			for b.Loop() {
				var err error
				dst, err = c.Decode(dst[:0], stored[i%len(stored)], ids[i%len(ids)])
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSeal is AES-256-GCM alone on 1 MiB.
func BenchmarkSeal(b *testing.B) {
	k := testKey(b)
	plain := randomCorpus()[:1<<20]
	dst := make([]byte, 0, 1<<20+chunk.Overhead)
	b.SetBytes(1 << 20)
	for b.Loop() {
		dst = k.Seal(dst[:0], plain)
	}
}

// BenchmarkOpen is AES-256-GCM authentication and decryption of 1 MiB.
func BenchmarkOpen(b *testing.B) {
	k := testKey(b)
	sealed := k.Seal(nil, randomCorpus()[:1<<20])
	dst := make([]byte, 0, 1<<20)
	b.SetBytes(1 << 20)
	for b.Loop() {
		var err error
		if dst, err = k.Open(dst[:0], sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipeline is the backup path for one stream on one goroutine:
// chunk, id, encode, over 64 MiB per iteration; "stored/raw" is the size
// ratio, "B/chunk" the mean chunk size.
func BenchmarkPipeline(b *testing.B) {
	c := testCodec(b)
	for _, avg := range chunkSizes {
		for _, cp := range corpora {
			b.Run("avg="+sizeName(avg)+"/"+cp.name, func(b *testing.B) {
				data := cp.data()
				p := benchParams(b, avg)
				ch := chunk.NewChunker(p)
				buf := make([]byte, p.MaxSize)
				dst := make([]byte, 0, p.MaxSize+chunk.Overhead+1)
				rd := bytes.NewReader(nil)
				b.SetBytes(int64(len(data)))
				var stored, chunks, iters int
				var sink chunk.ID
				for b.Loop() {
					iters++
					rd.Reset(data)
					ch.Reset(rd)
					for {
						plain, err := ch.Next(buf)
						if err == io.EOF {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
						id := c.BlobID(plain)
						sink[0] ^= id[0]
						dst = c.Encode(dst[:0], plain, c.BlobID(plain))
						stored += len(dst)
						chunks++
					}
				}
				b.ReportMetric(float64(stored)/float64(len(data)*iters), "stored/raw")
				b.ReportMetric(float64(len(data)*iters)/float64(chunks), "B/chunk")
				_ = sink
			})
		}
	}
}
