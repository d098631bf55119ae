package replicate_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/drctl/drctl/replicate"
)

// BenchmarkReplicateFull measures a full replication of a 256 MiB image
// (random and text regions, holes) into an in-memory repository.
func BenchmarkReplicateFull(b *testing.B) {
	dir := b.TempDir()
	img := filepath.Join(dir, "disk.img")
	f, _ := os.Create(img)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := 0; i < 256; i++ {
		if i%4 == 3 {
			continue // hole
		}
		for j := range buf {
			if i%2 == 0 {
				buf[j] = byte(rng.UintN(256))
			} else {
				buf[j] = "lorem ipsum dolor sit amet "[j%27]
			}
		}
		f.WriteAt(buf, int64(i)<<20)
	}
	f.Truncate(256 << 20)
	f.Close()
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		r, _ := newRepo(b)
		b.StartTimer()
		if _, err := replicate.Run(context.Background(), r, replicate.Options{VM: "bench", Disks: []replicate.Disk{{Path: img}}}); err != nil {
			b.Fatal(err)
		}
	}
}
