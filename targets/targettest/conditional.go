package targettest

import (
	"errors"
	"sync"
	"testing"

	"github.com/drctl/drctl/targets"
)

// racers is how many writers contend for one key.
const racers = 16

func testPutIfAbsent(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	v1, v2 := randomBytes(1, 300), randomBytes(2, 300)
	info, err := tg.PutIfAbsent(ctx, "once", v1)
	if err != nil {
		t.Fatalf("PutIfAbsent on a new key: %v", err)
	}
	if info.Size != 300 || info.ETag == "" {
		t.Fatalf("PutIfAbsent = %+v", info)
	}
	_, err = tg.PutIfAbsent(ctx, "once", v2)
	mustBe(t, "PutIfAbsent on an existing key", err, targets.ErrExists)
	if st := mustHold(t, tg, "once", v1); st.ETag != info.ETag {
		t.Fatalf("tag %q after a refused create, want %q", st.ETag, info.ETag)
	}
	if err := tg.Delete(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.PutIfAbsent(ctx, "once", v2); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	mustHold(t, tg, "once", v2)
}

func testPutIfAbsentRace(t *testing.T, tg targets.Target) {
	winner := race(t, func(i int) error {
		_, err := tg.PutIfAbsent(t.Context(), "race/create", randomBytes(uint64(100+i), 2000))
		return err
	}, targets.ErrExists)
	mustHold(t, tg, "race/create", randomBytes(uint64(100+winner), 2000))
}

func testPutIfMatch(t *testing.T, tg targets.Target) {
	ctx := t.Context()
	v1, v2, v3 := randomBytes(1, 100), randomBytes(2, 100), randomBytes(3, 200)
	i1 := put(t, tg, "cas", v1)
	i2, err := tg.PutIfMatch(ctx, "cas", v2, i1.ETag)
	if err != nil {
		t.Fatalf("PutIfMatch with the current tag: %v", err)
	}
	if i2.ETag == "" || i2.ETag == i1.ETag || i2.Size != 100 {
		t.Fatalf("PutIfMatch = %+v after %+v", i2, i1)
	}
	_, err = tg.PutIfMatch(ctx, "cas", v3, i1.ETag)
	mustBe(t, "PutIfMatch with a stale tag", err, targets.ErrPrecondition)
	if st := mustHold(t, tg, "cas", v2); st.ETag != i2.ETag {
		t.Fatalf("tag %q, want %q from PutIfMatch", st.ETag, i2.ETag)
	}
	_, err = tg.PutIfMatch(ctx, "cas-missing", v3, i1.ETag)
	mustBe(t, "PutIfMatch on a missing key", err, targets.ErrNotFound)
	mustNotFound(t, tg, "cas-missing")
	if _, err := tg.PutIfMatch(ctx, "cas", v3, i2.ETag); err != nil {
		t.Fatalf("second PutIfMatch: %v", err)
	}
	mustHold(t, tg, "cas", v3)
	if err := tg.Delete(ctx, "cas"); err != nil {
		t.Fatal(err)
	}
	_, err = tg.PutIfMatch(ctx, "cas", v1, i2.ETag)
	if !errors.Is(err, targets.ErrNotFound) && !errors.Is(err, targets.ErrPrecondition) {
		t.Fatalf("PutIfMatch after Delete: err = %v, want not found (or precondition)", err)
	}
}

func testPutIfMatchRace(t *testing.T, tg targets.Target) {
	base := put(t, tg, "race/cas", []byte("base"))
	winner := race(t, func(i int) error {
		_, err := tg.PutIfMatch(t.Context(), "race/cas", randomBytes(uint64(200+i), 1500), base.ETag)
		return err
	}, targets.ErrPrecondition)
	mustHold(t, tg, "race/cas", randomBytes(uint64(200+winner), 1500))
}

// race runs racers calls of f at once and checks that exactly one
// succeeded and all others failed with lost. It returns the winner.
func race(t *testing.T, f func(i int) error, lost error) int {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lost):
			t.Fatalf("writer %d: %v, want %v", i, err, lost)
		}
	}
	if winner < 0 {
		t.Fatalf("no writer won")
	}
	return winner
}
