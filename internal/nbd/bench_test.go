package nbd

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkQEMURead reads a 256 MiB image from qemu-nbd over a unix
// socket: in one ReadAt (eight pipelined 32 MiB requests), and in 4 MiB
// pieces from one and from four goroutines sharing the connection. The
// image is a raw file of non-zero bytes, so every byte crosses the socket
// (no holes).
func BenchmarkQEMURead(b *testing.B) {
	requireTools(b, "qemu-nbd")
	const size = 256 << 20
	img := filepath.Join(shortTempDir(b), "disk.raw")
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*131 + i>>20 | 1)
	}
	if err := os.WriteFile(img, data, 0o644); err != nil {
		b.Fatal(err)
	}
	data = nil
	sock := qemuNBD(b, img, "raw")
	ctx := context.Background()
	c, err := Dial(ctx, "unix", sock, "disk", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, size)
	read := func(b *testing.B, workers, piece int) {
		b.SetBytes(size)
		for b.Loop() {
			var wg sync.WaitGroup
			next := make(chan int64, size/piece)
			for off := int64(0); off < size; off += int64(piece) {
				next <- off
			}
			close(next)
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for off := range next {
						if err := c.ReadAt(ctx, buf[off:off+int64(piece)], off); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		}
	}
	b.Run("one-256MiB-ReadAt", func(b *testing.B) { read(b, 1, size) })
	b.Run("4MiB-pieces-1-goroutine", func(b *testing.B) { read(b, 1, 4<<20) })
	b.Run("4MiB-pieces-4-goroutines", func(b *testing.B) { read(b, 4, 4<<20) })
}
