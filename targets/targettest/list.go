package targettest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/drctl/drctl/targets"
)

// listKeys is enough for three pages of an S3 listing (1000 per page).
const listKeys = 3000

func testList(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	var want []string
	for i := range listKeys {
		want = append(want, fmt.Sprintf("list/%02x/%05d", i%7, i))
	}
	putMany(t, tg, want, func(i int) []byte { return []byte(want[i]) })
	slices.Sort(want)

	keys := func(l []targets.ObjectInfo) []string {
		var ks []string
		for _, oi := range l {
			ks = append(ks, oi.Key)
		}
		return ks
	}
	all := listAll(t, tg, "list/")
	if !slices.Equal(keys(all), want) {
		t.Fatalf("List(list/) returned %d keys, want %d", len(all), len(want))
	}
	for _, oi := range all {
		if oi.Size != int64(len(oi.Key)) || oi.ETag == "" {
			t.Fatalf("listed %+v, want size %d and a tag", oi, len(oi.Key))
		}
	}
	if got := keys(listAll(t, tg, "")); !slices.Equal(got, want) {
		t.Fatalf("List(\"\") returned %d keys, want %d", len(got), len(want))
	}
	for _, prefix := range []string{"list/03/", "list/03", "list/0", "list/03/001", "list/06/02999"} {
		var sub []string
		for _, k := range want {
			if strings.HasPrefix(k, prefix) {
				sub = append(sub, k)
			}
		}
		if got := keys(listAll(t, tg, prefix)); !slices.Equal(got, sub) {
			t.Fatalf("List(%q) returned %d keys, want %d", prefix, len(got), len(sub))
		}
	}
	for _, prefix := range []string{"nothing/", "list/99", "list/03/9", "lisp"} {
		if got := listAll(t, tg, prefix); len(got) != 0 {
			t.Fatalf("List(%q) returned %d keys, want none", prefix, len(got))
		}
	}

	// An error from the callback stops the listing and comes back as is.
	stop := errors.New("stop here")
	n := 0
	err := tg.List(ctx, "list/", func(targets.ObjectInfo) error {
		n++
		if n == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 1500 {
		t.Fatalf("List with a failing callback: err = %v after %d calls, want %v after 1500", err, n, stop)
	}
}

// putMany writes keys with 16 writers.
func putMany(t *testing.T, tg targets.Target, keys []string, data func(i int) []byte) {
	t.Helper()
	work := make(chan int)
	errs := make(chan error, len(keys))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if _, err := tg.Put(t.Context(), keys[i], data(i)); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range keys {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Put: %v", err)
	}
}

// testListOrder pins byte-wise order across directory levels: '-' < '/' <
// '0', so "x-z" comes before "x/y", which a naive directory walk gets
// wrong.
func testListOrder(t *testing.T, tg targets.Target) {
	want := []string{"x-z", "x/y", "x/y-1", "x/y0/a", "x/y0b", "x0", "xA", "x_", "xa/b"}
	for i := len(want) - 1; i >= 0; i-- {
		put(t, tg, want[i], []byte(want[i]))
	}
	var got []string
	for _, oi := range listAll(t, tg, "x") {
		got = append(got, oi.Key)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List(x) = %q, want %q", got, want)
	}
	got = got[:0]
	for _, oi := range listAll(t, tg, "x/y") {
		got = append(got, oi.Key)
	}
	if w := want[1:5]; !slices.Equal(got, w) {
		t.Fatalf("List(x/y) = %q, want %q", got, w)
	}
}
