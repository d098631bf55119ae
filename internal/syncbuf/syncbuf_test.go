package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestBuffer(t *testing.T) {
	b := &Buffer{Max: 10}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if n, err := b.Write([]byte("abc")); n != 3 || err != nil {
					t.Errorf("write: %d, %v", n, err)
				}
			}
		})
	}
	wg.Wait()
	if s := b.String(); len(s) != 10 || strings.Trim(s, "abc") != "" {
		t.Fatalf("kept %q", s)
	}
	var z Buffer
	z.Write([]byte("hello"))
	if z.String() != "hello" {
		t.Fatalf("zero value kept %q", z.String())
	}
}
