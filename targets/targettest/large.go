package targettest

import (
	"bytes"
	"testing"

	"github.com/drctl/drctl/targets"
)

// testLarge covers objects above the multipart threshold: the plain write,
// range reads across part boundaries, and the conditional writes, whose
// condition an S3 target must apply when it completes the upload.
func testLarge(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	v1, v2 := randomBytes(10, LargeSize), randomBytes(11, LargeSize+12345)
	i1 := put(t, tg, "large/a", v1)
	mustHold(t, tg, "large/a", v1)
	for _, off := range []int64{5<<20 - 100, 16<<20 - 7, LargeSize - 1000} {
		got, err := tg.GetRange(ctx, "large/a", off, 1000)
		if err != nil || !bytes.Equal(got, v1[off:off+1000]) {
			t.Fatalf("GetRange(%d, 1000): %d bytes, %v", off, len(got), err)
		}
	}

	_, err := tg.PutIfAbsent(ctx, "large/a", v2)
	mustBe(t, "large PutIfAbsent on an existing key", err, targets.ErrExists)
	mustHold(t, tg, "large/a", v1)
	if _, err := tg.PutIfAbsent(ctx, "large/b", v2); err != nil {
		t.Fatalf("large PutIfAbsent on a new key: %v", err)
	}
	mustHold(t, tg, "large/b", v2)

	i2, err := tg.PutIfMatch(ctx, "large/a", v2, i1.ETag)
	if err != nil {
		t.Fatalf("large PutIfMatch: %v", err)
	}
	mustHold(t, tg, "large/a", v2)
	_, err = tg.PutIfMatch(ctx, "large/a", v1, i1.ETag)
	mustBe(t, "large PutIfMatch with a stale tag", err, targets.ErrPrecondition)
	if st := mustHold(t, tg, "large/a", v2); st.ETag != i2.ETag {
		t.Fatalf("tag %q, want %q from PutIfMatch", st.ETag, i2.ETag)
	}
	_, err = tg.PutIfMatch(ctx, "large/missing", v1, i2.ETag)
	mustBe(t, "large PutIfMatch on a missing key", err, targets.ErrNotFound)
	mustNotFound(t, tg, "large/missing")
}
