package targets_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

func TestCounting(t *testing.T) {
	ctx := t.Context()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := targets.NewCounting(store)
	info, _ := c.Put(ctx, "a", []byte("hello"))
	c.Put(ctx, "b", []byte("hi"))
	c.Get(ctx, "a")
	c.Get(ctx, "missing")
	c.GetRange(ctx, "a", 1, 3)
	c.GetRange(ctx, "a", 4, 10) // beyond the end: an error
	c.Stat(ctx, "a")
	c.PutIfAbsent(ctx, "a", []byte("xx"))
	c.PutIfMatch(ctx, "a", []byte("yyy"), info.ETag)
	c.PutIfMatch(ctx, "a", []byte("zzzz"), info.ETag)
	c.List(ctx, "", func(targets.ObjectInfo) error { return nil })
	c.Delete(ctx, "b")

	s := c.Snapshot()
	want := map[targets.Op]targets.OpStats{
		targets.OpPut:         {Calls: 2, Requests: 2, BytesSent: 7},
		targets.OpGet:         {Calls: 2, Requests: 2, NotFound: 1, BytesReceived: 5},
		targets.OpGetRange:    {Calls: 2, Requests: 2, Errors: 1, BytesReceived: 3},
		targets.OpStat:        {Calls: 1, Requests: 1},
		targets.OpPutIfAbsent: {Calls: 1, Requests: 1, Conflicts: 1, BytesSent: 2},
		targets.OpPutIfMatch:  {Calls: 2, Requests: 2, Conflicts: 1, BytesSent: 7},
		targets.OpList:        {Calls: 1, Requests: 1},
		targets.OpDelete:      {Calls: 1, Requests: 1},
	}
	for _, op := range targets.Ops() {
		got := s.Ops[op]
		got.Duration = 0
		if got != want[op] {
			t.Errorf("%s: %+v, want %+v", op, got, want[op])
		}
	}
	if s.Total.Calls != 12 || s.Total.BytesSent != 16 || s.Total.Errors != 1 {
		t.Errorf("total %+v", s.Total)
	}
	if s.Target != store.String() {
		t.Errorf("target %q", s.Target)
	}

	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"put-if-match":{"calls":2`, `"bytes_sent":7`, `"total":`} {
		if !strings.Contains(string(b), frag) {
			t.Errorf("JSON %s lacks %s", b, frag)
		}
	}
	text := s.String()
	if !strings.Contains(text, "get-range") || !strings.Contains(text, "total") {
		t.Errorf("String() =\n%s", text)
	}
}

// pager is a target whose List sends three requests, like a paginated S3
// listing, and reports them.
type pager struct{ targets.Target }

func (pager) List(ctx context.Context, _ string, _ func(targets.ObjectInfo) error) error {
	for range 3 {
		targets.CountRequest(ctx)
	}
	return nil
}

func TestCountingRequests(t *testing.T) {
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inner := targets.NewCounting(pager{store})
	outer := targets.NewCounting(targets.NewRetry(inner, targets.FastRetryOptions()))
	for range 2 {
		outer.List(t.Context(), "", nil)
	}
	for name, c := range map[string]*targets.Counting{"inner": inner, "outer": outer} {
		if got := c.Snapshot().Ops[targets.OpList]; got.Calls != 2 || got.Requests != 6 {
			t.Errorf("%s: %+v, want 2 calls and 6 requests", name, got)
		}
	}
}

func TestCountingConcurrent(t *testing.T) {
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := targets.NewCounting(store)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				c.Stat(t.Context(), "nothing")
			}
		})
	}
	wg.Wait()
	if got := c.Snapshot().Ops[targets.OpStat]; got.Calls != 400 || got.NotFound != 400 {
		t.Fatalf("%+v, want 400 calls, all not found", got)
	}
}
