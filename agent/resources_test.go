package agent

import (
	"context"
	"testing"
	"time"
)

// TestSlots checks the host and per-repository bounds, and that a reload
// raising or lowering them acts on waiting jobs, not just new ones.
func TestSlots(t *testing.T) {
	s := newSlots(2, 1)
	ctx := t.Context()
	take := func(repo string) (func(), bool) {
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		rel, err := s.acquire(c, repo)
		return rel, err == nil
	}
	relA, ok := take("a")
	if !ok {
		t.Fatal("first job waits")
	}
	if _, ok := take("a"); ok {
		t.Fatal("second job on repository a runs past its limit of 1")
	}
	relB, ok := take("b")
	if !ok {
		t.Fatal("job on repository b waits")
	}
	if _, ok := take("c"); ok {
		t.Fatal("third job runs past the host limit of 2")
	}

	// A waiting job starts when a reload raises the limit.
	got := make(chan func(), 1)
	go func() {
		rel, err := s.acquire(ctx, "c")
		if err == nil {
			got <- rel
		}
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("waiting job ran before the limit changed")
	default:
	}
	s.resize(3, 1)
	var relC func()
	select {
	case relC = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("waiting job did not start after the limit went up")
	}

	// Lowered to 1 with 3 running: new jobs wait until 2 have ended.
	s.resize(1, 1)
	relA()
	relA() // a second release is a no-op
	if _, ok := take("a"); ok {
		t.Fatal("job ran with 2 running and a limit of 1")
	}
	relB()
	if _, ok := take("a"); ok {
		t.Fatal("job ran with 1 running and a limit of 1")
	}
	relC()
	rel, ok := take("a")
	if !ok {
		t.Fatal("job waits with nothing running")
	}
	rel()
}
