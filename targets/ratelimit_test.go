package targets_test

import (
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/targets"
)

func TestRateLimitedUploads(t *testing.T) {
	lim := targets.NewLimiter(4 << 20) // 4 MiB/s
	a := targets.NewRateLimited(memtarget.New(), lim)
	b := targets.NewRateLimited(memtarget.New(), lim) // shares the host's budget
	data := make([]byte, 1<<20)
	start := time.Now()
	for i := range 4 {
		if _, err := a.Put(t.Context(), "a/"+string(rune('0'+i)), data); err != nil {
			t.Fatal(err)
		}
		if _, err := b.PutIfAbsent(t.Context(), "b/"+string(rune('0'+i)), data); err != nil {
			t.Fatal(err)
		}
	}
	// 8 MiB at 4 MiB/s, less the initial burst: about 2 s.
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4*time.Second {
		t.Fatalf("8 MiB through a shared 4 MiB/s limit took %v", d)
	}
	// Downloads are not limited.
	start = time.Now()
	for range 20 {
		if _, _, err := a.Get(t.Context(), "a/0"); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("20 MiB of downloads took %v", d)
	}
}
