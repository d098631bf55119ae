package targettest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/drctl/drctl/targets"
)

// prompt is how soon a cancelled call must return.
const prompt = 2 * time.Second

func testCancel(t *testing.T, tg targets.Target) {
	put(t, tg, "c/obj", []byte("data"))
	put(t, tg, "c/obj2", []byte("data"))
	info, err := tg.Stat(t.Context(), "c/obj")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Get":         func() error { _, _, err := tg.Get(ctx, "c/obj"); return err },
		"GetRange":    func() error { _, err := tg.GetRange(ctx, "c/obj", 0, 2); return err },
		"Stat":        func() error { _, err := tg.Stat(ctx, "c/obj"); return err },
		"Put":         func() error { _, err := tg.Put(ctx, "c/new", []byte("x")); return err },
		"PutIfAbsent": func() error { _, err := tg.PutIfAbsent(ctx, "c/new", []byte("x")); return err },
		"PutIfMatch":  func() error { _, err := tg.PutIfMatch(ctx, "c/obj", []byte("x"), info.ETag); return err },
		"List":        func() error { return tg.List(ctx, "c/", func(targets.ObjectInfo) error { return nil }) },
		"Delete":      func() error { return tg.Delete(ctx, "c/obj") },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
		if targets.IsTransient(err) {
			t.Errorf("%s: a cancellation is marked transient: %v", name, err)
		}
		if d := time.Since(start); d > prompt {
			t.Errorf("%s took %s to notice the cancelled context", name, d)
		}
	}
	mustHold(t, tg, "c/obj", []byte("data"))
	mustNotFound(t, tg, "c/new")

	// Cancelled while listing: the listing stops with the cancellation.
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	n := 0
	err = tg.List(ctx, "c/", func(targets.ObjectInfo) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("List cancelled in its callback: err = %v after %d objects, want context.Canceled after 1", err, n)
	}
}

// testCancelDuringWrite cancels large writes at various points: each call
// returns promptly, and the object is then either absent or complete,
// never torn.
func testCancelDuringWrite(t *testing.T, tg targets.Target) {
	data := randomBytes(20, LargeSize)
	for i, after := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond} {
		key := "cw/" + string(rune('a'+i))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(after, cancel)
		start := time.Now()
		_, err := tg.PutIfAbsent(ctx, key, data)
		d := time.Since(start)
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("PutIfAbsent cancelled after %s: err = %v, want nil or context.Canceled", after, err)
		}
		if d > after+prompt {
			t.Fatalf("PutIfAbsent cancelled after %s returned after %s", after, d)
		}
		got, _, gerr := tg.Get(t.Context(), key)
		switch {
		case err == nil && (gerr != nil || !bytes.Equal(got, data)):
			t.Fatalf("write reported done but Get = %d bytes, %v", len(got), gerr)
		case gerr == nil && !bytes.Equal(got, data):
			t.Fatalf("cancelled write left a torn object: %d bytes", len(got))
		case gerr != nil && !errors.Is(gerr, targets.ErrNotFound):
			t.Fatalf("Get after a cancelled write: %v", gerr)
		}
	}
}
