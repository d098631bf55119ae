package replicate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrStalled ends a replication that made no progress for its
// StallTimeout: QEMU, a disk or the target stopped answering without an
// error. The run fails like any other (nothing is committed; what was
// uploaded is reused by the next run), so that a scheduler can try again
// instead of waiting on it for ever.
var ErrStalled = errors.New("replication stalled")

// DefaultStallTimeout is long enough for any single step of a healthy
// run (loading a large index over a slow link, one pack's upload at a
// few hundred kbit/s) and short against a day of missed recovery points.
const DefaultStallTimeout = 15 * time.Minute

// progress grows while a replication works: disk bytes passed and read,
// pack bytes uploaded.
func (c *Counters) progress() int64 {
	return c.BytesScanned.Load() + c.BytesRead.Load() + c.BytesStored.Load()
}

// watchStall returns a context cancelled with ErrStalled as its cause
// once progress has not moved for d (never when d is 0), and a stop that
// ends the watch.
func watchStall(ctx context.Context, d time.Duration, progress func() int64) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if d <= 0 {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(min(d/4, 10*time.Second))
		defer tick.Stop()
		last, since := progress(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if p := progress(); p != last {
					last, since = p, now
				} else if now.Sub(since) >= d {
					cancel(fmt.Errorf("%w: no progress for %v (QEMU, a disk or the target stopped answering)", ErrStalled, d))
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// stalled replaces the error of a run the watchdog cut short by the
// watchdog's reason: the cancellation it caused is not the caller's, and
// must not read as a stop asked for (exit 130, "resumes next run").
func stalled(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrStalled) {
		return fmt.Errorf("%w (it was at: %v)", cause, err)
	}
	return err
}

// mirrorStored copies the writer's uploaded bytes into the counters every
// half second, so that they show upload progress (and the watchdog sees
// it) while a run waits on its uploads.
func mirrorStored(c *Counters, stored func() int64) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				c.BytesStored.Store(stored())
			}
		}
	}()
	return func() { close(done) }
}
