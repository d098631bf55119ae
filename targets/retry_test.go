package targets_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

// stack is Retry(Counting(Faulty(local))): the counting layer sees every
// attempt the retry layer makes.
type stack struct {
	retry    *targets.Retry
	attempts *targets.Counting
	faults   *targets.Faulty
	store    *local.Target
	log      *bytes.Buffer
}

func newStack(t *testing.T, opts targets.RetryOptions) *stack {
	t.Helper()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{store: store, log: &bytes.Buffer{}}
	s.faults = targets.NewFaulty(store)
	s.attempts = targets.NewCounting(s.faults)
	opts.Logger = slog.New(slog.NewTextHandler(s.log, nil))
	s.retry = targets.NewRetry(s.attempts, opts)
	return s
}

func (s *stack) calls(op targets.Op) int64 { return s.attempts.Snapshot().Ops[op].Calls }

// call runs op on the retry layer against a store holding "k" (its tag is
// etag) and returns the error.
func call(ctx context.Context, tg targets.Target, op targets.Op, etag string) error {
	var err error
	switch op {
	case targets.OpGet:
		_, _, err = tg.Get(ctx, "k")
	case targets.OpGetRange:
		_, err = tg.GetRange(ctx, "k", 1, 2)
	case targets.OpStat:
		_, err = tg.Stat(ctx, "k")
	case targets.OpPut:
		_, err = tg.Put(ctx, "k", []byte("new"))
	case targets.OpPutIfAbsent:
		_, err = tg.PutIfAbsent(ctx, "fresh", []byte("new"))
	case targets.OpPutIfMatch:
		_, err = tg.PutIfMatch(ctx, "k", []byte("new"), etag)
	case targets.OpList:
		err = tg.List(ctx, "", func(targets.ObjectInfo) error { return nil })
	case targets.OpDelete:
		err = tg.Delete(ctx, "k")
	}
	return err
}

func TestRetry(t *testing.T) {
	permanent := fmt.Errorf("disk on fire: %w", targets.ErrInjected)
	tests := []struct {
		name         string
		fault        targets.Fault
		wantErr      error // nil: success
		wantAttempts int64
	}{
		{"transient twice then success", targets.Fault{Times: 2}, nil, 3},
		{"transient four times then success", targets.Fault{Times: 4}, nil, 5},
		{"permanent error is not retried", targets.Fault{Times: 1, Err: permanent}, targets.ErrInjected, 1},
		{"not found is not retried", targets.Fault{Times: 1, Err: targets.ErrNotFound}, targets.ErrNotFound, 1},
		{"access denied is not retried", targets.Fault{Times: 1, Err: targets.ErrAccessDenied}, targets.ErrAccessDenied, 1},
		{"always failing gives up", targets.Fault{}, targets.ErrInjected, 5},
	}
	for _, op := range targets.Ops() {
		for _, tc := range tests {
			t.Run(string(op)+"/"+tc.name, func(t *testing.T) {
				s := newStack(t, targets.FastRetryOptions())
				info, err := s.store.Put(t.Context(), "k", []byte("data"))
				if err != nil {
					t.Fatal(err)
				}
				f := tc.fault
				f.Ops = []targets.Op{op}
				s.faults.Add(f)
				err = call(t.Context(), s.retry, op, info.ETag)
				if tc.wantErr == nil && err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if got := s.calls(op); got != tc.wantAttempts {
					t.Fatalf("%d attempts, want %d", got, tc.wantAttempts)
				}
				if tc.wantAttempts > 1 && !strings.Contains(s.log.String(), "retrying") {
					t.Errorf("retries were not logged: %q", s.log.String())
				}
			})
		}
	}
}

func TestRetryGivesUp(t *testing.T) {
	s := newStack(t, targets.RetryOptions{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpStat}})
	_, err := s.retry.Stat(t.Context(), "k")
	var ue *targets.UnavailableError
	if !errors.As(err, &ue) || ue.Attempts != 3 {
		t.Fatalf("err = %v, want an UnavailableError after 3 attempts", err)
	}
	msg := err.Error()
	for _, want := range []string{s.store.String(), "unreachable or failing", "3 attempts", `stat "k"`, "injected fault"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	if !errors.Is(err, targets.ErrInjected) || !targets.IsTransient(err) {
		t.Errorf("the cause is lost: Is(ErrInjected) = %v, IsTransient = %v", errors.Is(err, targets.ErrInjected), targets.IsTransient(err))
	}
}

func TestRetryMaxElapsed(t *testing.T) {
	s := newStack(t, targets.RetryOptions{MaxAttempts: 100, InitialBackoff: 20 * time.Millisecond, MaxElapsed: 100 * time.Millisecond})
	s.faults.Add(targets.Fault{})
	start := time.Now()
	_, err := s.retry.Stat(t.Context(), "k")
	var ue *targets.UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an UnavailableError", err)
	}
	if d := time.Since(start); d > time.Second || ue.Attempts >= 100 {
		t.Fatalf("gave up after %s and %d attempts, want about 100ms", d, ue.Attempts)
	}
}

func TestRetryCancelStopsBackoff(t *testing.T) {
	s := newStack(t, targets.RetryOptions{MaxAttempts: 10, InitialBackoff: time.Minute})
	s.faults.Add(targets.Fault{})
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.retry.Put(ctx, "k", []byte("x"))
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %s to stop the backoff", d)
	}
	if !errors.Is(err, context.Canceled) || targets.IsTransient(err) {
		t.Fatalf("err = %v, want context.Canceled and not transient", err)
	}
	if !strings.Contains(err.Error(), "injected fault") {
		t.Errorf("err = %v, want it to name the last failure", err)
	}
	if n := s.calls(targets.OpPut); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
}

// TestRetryConditionalAmbiguity covers a conditional write whose first
// attempt landed but whose answer was lost: the retry finds the key
// taken (or its tag changed) and must see that it was its own write.
func TestRetryConditionalAmbiguity(t *testing.T) {
	ctx := t.Context()
	ours := []byte("our manifest")

	t.Run("PutIfAbsent landed", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		r := s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfAbsent}, Times: 1, Landed: true})
		info, err := s.retry.PutIfAbsent(ctx, "snap", ours)
		if err != nil {
			t.Fatalf("PutIfAbsent: %v, want success (the first attempt landed)", err)
		}
		if s.faults.Fired(r) != 1 || s.calls(targets.OpPutIfAbsent) != 2 {
			t.Fatalf("fired %d, attempts %d", s.faults.Fired(r), s.calls(targets.OpPutIfAbsent))
		}
		st, _ := s.store.Stat(ctx, "snap")
		if info.ETag != st.ETag {
			t.Fatalf("returned tag %q, stored %q", info.ETag, st.ETag)
		}
	})
	t.Run("PutIfAbsent lost to another writer", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		if _, err := s.store.Put(ctx, "snap", []byte("their manifest")); err != nil {
			t.Fatal(err)
		}
		s.faults.FailNext(targets.OpPutIfAbsent, 1, nil)
		_, err := s.retry.PutIfAbsent(ctx, "snap", ours)
		if !errors.Is(err, targets.ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
	})
	t.Run("PutIfAbsent exists without a transient failure", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		if _, err := s.store.Put(ctx, "snap", ours); err != nil {
			t.Fatal(err)
		}
		// Same bytes, but no earlier attempt: it is someone else's write.
		_, err := s.retry.PutIfAbsent(ctx, "snap", ours)
		if !errors.Is(err, targets.ErrExists) || s.calls(targets.OpGet) != 0 {
			t.Fatalf("err = %v after %d gets, want ErrExists without reading", err, s.calls(targets.OpGet))
		}
	})
	t.Run("PutIfMatch landed", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		old, _ := s.store.Put(ctx, "fence", []byte("gen 1"))
		s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfMatch}, Times: 1, Landed: true})
		if _, err := s.retry.PutIfMatch(ctx, "fence", []byte("gen 2"), old.ETag); err != nil {
			t.Fatalf("PutIfMatch: %v, want success (the first attempt landed)", err)
		}
	})
	t.Run("PutIfMatch lost to another writer", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		old, _ := s.store.Put(ctx, "fence", []byte("gen 1"))
		s.faults.FailNext(targets.OpPutIfMatch, 1, nil)
		if _, err := s.store.Put(ctx, "fence", []byte("gen 2 by B")); err != nil {
			t.Fatal(err)
		}
		_, err := s.retry.PutIfMatch(ctx, "fence", []byte("gen 2 by A"), old.ETag)
		if !errors.Is(err, targets.ErrPrecondition) {
			t.Fatalf("err = %v, want ErrPrecondition", err)
		}
	})
	t.Run("check fails transiently too", func(t *testing.T) {
		s := newStack(t, targets.FastRetryOptions())
		s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfAbsent}, Times: 1, Landed: true})
		s.faults.FailNext(targets.OpGet, 1, nil)
		if _, err := s.retry.PutIfAbsent(ctx, "snap", ours); err != nil {
			t.Fatalf("PutIfAbsent: %v, want success", err)
		}
	})
}

// TestRetryList checks that a listing cut part way is resumed without
// passing any object twice, and that the callback's own error, even a
// transient one, is returned without a retry.
func TestRetryList(t *testing.T) {
	ctx := t.Context()
	s := newStack(t, targets.FastRetryOptions())
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if _, err := s.store.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpList}, AfterObjects: 4, Times: 1})
	s.faults.Add(targets.Fault{Ops: []targets.Op{targets.OpList}, AfterCalls: 1, AfterObjects: 7, Times: 1})
	var got []string
	err := s.retry.List(ctx, "", func(oi targets.ObjectInfo) error {
		got = append(got, oi.Key)
		return nil
	})
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("List = %q, %v; want %q", got, err, want)
	}
	if n := s.calls(targets.OpList); n != 3 {
		t.Fatalf("%d list attempts, want 3", n)
	}
	if u := s.faults.Unfired(); len(u) != 0 {
		t.Fatalf("faults did not fire: %+v", u)
	}

	mine := targets.Transient(errors.New("callback gave up"))
	err = s.retry.List(ctx, "", func(targets.ObjectInfo) error { return mine })
	if !errors.Is(err, mine) || s.calls(targets.OpList) != 4 {
		t.Fatalf("err = %v after %d attempts, want the callback's error after one more", err, s.calls(targets.OpList)-3)
	}
}
