package targettest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/drctl/drctl/targets"
)

func testRoundtrip(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	data := randomBytes(1, 1000)
	pinfo := put(t, tg, "rt/obj", data)
	ginfo := mustHold(t, tg, "rt/obj", data)
	sinfo, err := tg.Stat(ctx, "rt/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if sinfo.Size != 1000 || sinfo.Key != "rt/obj" || sinfo.ModTime.IsZero() {
		t.Fatalf("Stat = %+v", sinfo)
	}
	list := listAll(t, tg, "rt/")
	if len(list) != 1 || list[0].Key != "rt/obj" || list[0].Size != 1000 {
		t.Fatalf("List = %+v", list)
	}
	// Callers keep a tag from any of these and hand it to PutIfMatch.
	for what, tag := range map[string]string{"Get": ginfo.ETag, "Stat": sinfo.ETag, "List": list[0].ETag} {
		if tag != pinfo.ETag {
			t.Errorf("%s tag %q differs from Put's %q", what, tag, pinfo.ETag)
		}
	}
	if t.Failed() {
		return
	}
	if _, err := tg.PutIfMatch(ctx, "rt/obj", randomBytes(2, 10), list[0].ETag); err != nil {
		t.Fatalf("PutIfMatch with the listed tag: %v", err)
	}
}

func testOverwrite(t *testing.T, tg targets.Target) {
	v1, v2 := randomBytes(1, 500), randomBytes(2, 700)
	i1 := put(t, tg, "ow", v1)
	i2 := put(t, tg, "ow", v2)
	mustHold(t, tg, "ow", v2)
	if i1.ETag == i2.ETag {
		t.Fatalf("tag %q did not change when the content did", i1.ETag)
	}
	put(t, tg, "ow", v1)
	mustHold(t, tg, "ow", v1)
}

func testGetRange(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	const size = 100 << 10
	data := randomBytes(3, size)
	put(t, tg, "range", data)
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(off, n int64) {
		t.Helper()
		got, err := tg.GetRange(ctx, "range", off, n)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", off, n, err)
		}
		if !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("GetRange(%d, %d): wrong bytes (%d returned)", off, n, len(got))
		}
	}
	for range 20 {
		off := rng.Int64N(size)
		check(off, rng.Int64N(size-off)+1)
	}
	check(0, size)
	check(size-1, 1)
	check(size-4096, 4096)
	check(0, 1)
	check(size, 0)
	check(10, 0)
	for _, r := range [][2]int64{{size - 10, 11}, {size, 1}, {size + 100, 10}, {0, size + 1}} {
		_, err := tg.GetRange(ctx, "range", r[0], r[1])
		mustBe(t, fmt.Sprintf("GetRange(%d, %d) of %d bytes", r[0], r[1], size), err, targets.ErrRange)
	}
}

func testMissing(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	_, _, err := tg.Get(ctx, "no/such/key")
	mustBe(t, "Get", err, targets.ErrNotFound)
	_, err = tg.GetRange(ctx, "no/such/key", 0, 1)
	mustBe(t, "GetRange", err, targets.ErrNotFound)
	_, err = tg.Stat(ctx, "no/such/key")
	mustBe(t, "Stat", err, targets.ErrNotFound)
	if err := tg.Delete(ctx, "no/such/key"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}

	put(t, tg, "gone", []byte("x"))
	if err := tg.Delete(ctx, "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustNotFound(t, tg, "gone")
	if err := tg.Delete(ctx, "gone"); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if l := listAll(t, tg, ""); len(l) != 0 {
		t.Fatalf("List after Delete = %+v", l)
	}
}

func testInvalidKeys(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	for _, key := range []string{"", "/abs", "a//b", "a/", "../up", "a/../b", ".hidden", "a/.tmp-x", "a\\b"} {
		if _, err := tg.Put(ctx, key, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an invalid-key error", key)
		}
		if _, _, err := tg.Get(ctx, key); err == nil {
			t.Errorf("Get(%q) succeeded, want an invalid-key error", key)
		}
	}
}

func testEmptyObject(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	put(t, tg, "empty", nil)
	mustHold(t, tg, "empty", nil)
	st, err := tg.Stat(ctx, "empty")
	if err != nil || st.Size != 0 {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	got, err := tg.GetRange(ctx, "empty", 0, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("GetRange(0, 0) = %d bytes, %v", len(got), err)
	}
	_, err = tg.GetRange(ctx, "empty", 0, 1)
	mustBe(t, "GetRange(0, 1) of an empty object", err, targets.ErrRange)
	if _, err := tg.PutIfAbsent(ctx, "empty2", []byte{}); err != nil {
		t.Fatalf("PutIfAbsent(empty): %v", err)
	}
	mustHold(t, tg, "empty2", nil)
	if l := listAll(t, tg, "empty"); len(l) != 2 || l[0].Size != 0 {
		t.Fatalf("List = %+v", l)
	}
}

func testNestedKeys(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	keys := []string{"n/a/b/c/d/e/f", "n/a/b/x", "n/a/y", "n/z", "n/a/b/c/g"}
	for i, k := range keys {
		put(t, tg, k, randomBytes(uint64(i), 10+i))
	}
	for i, k := range keys {
		mustHold(t, tg, k, randomBytes(uint64(i), 10+i))
	}
	l := listAll(t, tg, "n/a/b/")
	if len(l) != 3 || l[0].Key != "n/a/b/c/d/e/f" || l[1].Key != "n/a/b/c/g" || l[2].Key != "n/a/b/x" {
		t.Fatalf("List(n/a/b/) = %+v", l)
	}
	if err := tg.Delete(ctx, "n/a/b/c/d/e/f"); err != nil {
		t.Fatal(err)
	}
	mustNotFound(t, tg, "n/a/b/c/d/e/f")
	if l := listAll(t, tg, "n/"); len(l) != 4 {
		t.Fatalf("List(n/) after Delete = %+v", l)
	}
	// The deleted key's former parent directories are no objects.
	for _, k := range []string{"n/a/b/c/d/e", "n/a/b/c", "n/a"} {
		_, err := tg.Stat(ctx, k)
		mustBe(t, "Stat("+k+")", err, targets.ErrNotFound)
	}
	put(t, tg, "n/a/b/c/d/e/f", []byte("again"))
	mustHold(t, tg, "n/a/b/c/d/e/f", []byte("again"))
}
