package targets_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

func newFaulty(t *testing.T) (*targets.Faulty, *local.Target) {
	t.Helper()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return targets.NewFaulty(store), store
}

func TestFaultyCounts(t *testing.T) {
	ctx := t.Context()
	f, _ := newFaulty(t)
	r := f.Add(targets.Fault{Ops: []targets.Op{targets.OpPut}, KeyPrefix: "data/", AfterCalls: 2, Times: 2})
	var errs []bool
	for range 6 {
		_, err := f.Put(ctx, "data/x", []byte("x"))
		errs = append(errs, err != nil)
		if err != nil && (!targets.IsTransient(err) || !errors.Is(err, targets.ErrInjected)) {
			t.Fatalf("injected error %v is not a transient ErrInjected", err)
		}
	}
	if want := []bool{false, false, true, true, false, false}; !slices.Equal(errs, want) {
		t.Fatalf("failures %v, want %v", errs, want)
	}
	if _, err := f.Put(ctx, "other", []byte("x")); err != nil {
		t.Fatalf("a key outside the prefix failed: %v", err)
	}
	if f.Fired(r) != 2 || len(f.Unfired()) != 0 {
		t.Fatalf("fired %d, unfired %v", f.Fired(r), f.Unfired())
	}
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpDelete}})
	if len(f.Unfired()) != 1 {
		t.Fatalf("a rule that never fired is not reported")
	}
}

func TestFaultyAfterBytes(t *testing.T) {
	ctx := t.Context()
	f, _ := newFaulty(t)
	full := errors.New("no space left")
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpPut}, AfterBytes: 100, Err: full})
	var ok int
	for range 5 {
		if _, err := f.Put(ctx, "k", make([]byte, 30)); err == nil {
			ok++
		} else if !errors.Is(err, full) || targets.IsTransient(err) {
			t.Fatalf("err = %v", err)
		}
	}
	if ok != 3 {
		t.Fatalf("%d puts of 30 bytes passed a 100-byte budget, want 3", ok)
	}

	f.Clear()
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpGet}, AfterBytes: 50})
	for i := range 3 {
		_, _, err := f.Get(ctx, "k")
		if (err != nil) != (i == 2) {
			t.Fatalf("get %d: err = %v", i, err)
		}
	}
}

func TestFaultyLanded(t *testing.T) {
	ctx := t.Context()
	f, store := newFaulty(t)
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfAbsent}, Times: 1, Landed: true})
	if _, err := f.PutIfAbsent(ctx, "k", []byte("v")); !targets.IsTransient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if _, _, err := store.Get(ctx, "k"); err != nil {
		t.Fatalf("the write did not land: %v", err)
	}
}

func TestFaultyDelay(t *testing.T) {
	f, _ := newFaulty(t)
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpStat}, Delay: 20 * time.Millisecond})
	start := time.Now()
	if _, err := f.Stat(t.Context(), "k"); !errors.Is(err, targets.ErrNotFound) {
		t.Fatalf("a delay-only fault changed the answer: %v", err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatalf("no delay")
	}

	f.Clear()
	f.Add(targets.Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Stat(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
}
