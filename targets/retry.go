package targets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// RetryOptions tune NewRetry. Zero fields take the value of
// DefaultRetryOptions.
type RetryOptions struct {
	// MaxAttempts is the number of attempts of one call, the first
	// included.
	MaxAttempts int
	// InitialBackoff is the wait before the second attempt; each further
	// wait doubles, up to MaxBackoff. Waits are jittered to between half
	// and all of that, so agents that failed together do not retry in step.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// MaxElapsed bounds a call, waits included: no wait is started that
	// would end past it.
	MaxElapsed time.Duration
	// Logger receives one warning per retry. Default slog.Default().
	Logger *slog.Logger
}

// DefaultRetryOptions ride out an outage of about two minutes (a gateway
// restart, a throttling burst) before a call fails.
func DefaultRetryOptions() RetryOptions {
	return RetryOptions{
		MaxAttempts:    10,
		InitialBackoff: 500 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
		MaxElapsed:     5 * time.Minute,
	}
}

// FastRetryOptions are for tests: the same logic with millisecond waits.
func FastRetryOptions() RetryOptions {
	return RetryOptions{
		MaxAttempts:    5,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     5 * time.Millisecond,
		MaxElapsed:     10 * time.Second,
	}
}

func (o RetryOptions) withDefaults() RetryOptions {
	d := DefaultRetryOptions()
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = d.MaxAttempts
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = d.InitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = max(d.MaxBackoff, o.InitialBackoff)
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = d.MaxElapsed
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// UnavailableError is returned by the retry wrapper when a call kept
// failing with transient errors until its attempts or time ran out. It
// wraps the last error, so errors.Is still finds its sentinel and
// IsTransient still reports true: the target may come back later.
type UnavailableError struct {
	Target   string
	Attempts int
	Elapsed  time.Duration
	Err      error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("target %s is unreachable or failing (gave up after %d attempts in %s): %v",
		e.Target, e.Attempts, e.Elapsed.Round(time.Millisecond), e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Retry is a Target that retries calls failing with a transient error
// (IsTransient), with exponential backoff and jitter. Any other error, and
// a cancelled context, end the call at once.
type Retry struct {
	next Target
	opts RetryOptions
}

// NewRetry wraps t.
func NewRetry(t Target, opts RetryOptions) *Retry {
	return &Retry{next: t, opts: opts.withDefaults()}
}

// Unwrap returns the wrapped target.
func (r *Retry) Unwrap() Target { return r.next }

// String names the wrapped target.
func (r *Retry) String() string { return r.next.String() }

// final marks an error that must not be retried even if it is transient:
// one returned by the caller's List callback.
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }

// do runs f until it succeeds, fails permanently, or the budget runs out.
func (r *Retry) do(ctx context.Context, op Op, key string, f func(context.Context) error) error {
	start := time.Now()
	backoff := r.opts.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		var fe final
		if errors.As(err, &fe) {
			return fe.err
		}
		if err == nil || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, r.opts.MaxBackoff)
		elapsed := time.Since(start)
		if attempt >= r.opts.MaxAttempts || elapsed+wait > r.opts.MaxElapsed {
			return &UnavailableError{Target: r.next.String(), Attempts: attempt, Elapsed: elapsed, Err: err}
		}
		r.opts.Logger.Warn("storage call failed, retrying", "target", r.next.String(), "op", string(op),
			"key", key, "attempt", attempt, "wait", wait, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%s %q on %s: %w while waiting to retry (last error: %v)", op, key, r.next, ctx.Err(), err)
		case <-timer.C:
		}
	}
}

func (r *Retry) Get(ctx context.Context, key string) (data []byte, info ObjectInfo, err error) {
	err = r.do(ctx, OpGet, key, func(ctx context.Context) error {
		data, info, err = r.next.Get(ctx, key)
		return err
	})
	return data, info, err
}

func (r *Retry) GetRange(ctx context.Context, key string, off, length int64) (data []byte, err error) {
	err = r.do(ctx, OpGetRange, key, func(ctx context.Context) error {
		data, err = r.next.GetRange(ctx, key, off, length)
		return err
	})
	return data, err
}

func (r *Retry) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = r.do(ctx, OpStat, key, func(ctx context.Context) error {
		info, err = r.next.Stat(ctx, key)
		return err
	})
	return info, err
}

func (r *Retry) Put(ctx context.Context, key string, data []byte) (info ObjectInfo, err error) {
	err = r.do(ctx, OpPut, key, func(ctx context.Context) error {
		info, err = r.next.Put(ctx, key, data)
		return err
	})
	return info, err
}

// PutIfAbsent retries like the others, with one subtlety: when an attempt
// failed transiently, the write may still have landed (the response was
// lost), and the next attempt then finds the key present. So after a
// transient failure, ErrExists is checked: if the stored object holds
// exactly our bytes, the earlier attempt won and the call succeeds. A
// different writer that stored the very same bytes cannot be told apart;
// callers that must know put unique content (a writer id, a timestamp).
func (r *Retry) PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	return r.conditional(ctx, OpPutIfAbsent, key, data, ErrExists, func(ctx context.Context) (ObjectInfo, error) {
		return r.next.PutIfAbsent(ctx, key, data)
	})
}

// PutIfMatch has the same subtlety as PutIfAbsent: an earlier attempt that
// landed changed the tag, so a retry gets ErrPrecondition; if the stored
// object holds exactly our bytes, the call succeeds.
func (r *Retry) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error) {
	return r.conditional(ctx, OpPutIfMatch, key, data, ErrPrecondition, func(ctx context.Context) (ObjectInfo, error) {
		return r.next.PutIfMatch(ctx, key, data, etag)
	})
}

func (r *Retry) conditional(ctx context.Context, op Op, key string, data []byte, lost error,
	put func(context.Context) (ObjectInfo, error)) (info ObjectInfo, err error) {
	uncertain := false // an earlier attempt may have landed
	err = r.do(ctx, op, key, func(ctx context.Context) error {
		info, err = put(ctx)
		if uncertain && errors.Is(err, lost) {
			if landed, linfo, cerr := r.holds(ctx, key, data); cerr != nil {
				return cerr
			} else if landed {
				r.opts.Logger.Info("an earlier attempt of a conditional write had landed", "target", r.next.String(),
					"op", string(op), "key", key)
				info = linfo
				return nil
			}
		}
		if IsTransient(err) {
			uncertain = true
		}
		return err
	})
	return info, err
}

// holds reports whether key currently holds exactly data. Only a transient
// error (so that do retries the whole check) or a cancellation is returned;
// a missing key or a permanent error means "no".
func (r *Retry) holds(ctx context.Context, key string, data []byte) (bool, ObjectInfo, error) {
	st, err := r.next.Stat(ctx, key)
	if err != nil || st.Size != int64(len(data)) {
		if IsTransient(err) || ctx.Err() != nil {
			return false, ObjectInfo{}, err
		}
		return false, ObjectInfo{}, nil
	}
	got, info, err := r.next.Get(ctx, key)
	if err != nil {
		if IsTransient(err) || ctx.Err() != nil {
			return false, ObjectInfo{}, err
		}
		return false, ObjectInfo{}, nil
	}
	return bytes.Equal(got, data), info, nil
}

// List retries a listing that failed part way without repeating objects:
// the retry skips keys up to the last one already passed to fn (listings
// are in lexical order). An error from fn ends the listing unretried.
func (r *Retry) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var last string
	started := false
	return r.do(ctx, OpList, prefix, func(ctx context.Context) error {
		return r.next.List(ctx, prefix, func(oi ObjectInfo) error {
			if started && oi.Key <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				return final{err}
			}
			last, started = oi.Key, true
			return nil
		})
	})
}

func (r *Retry) Delete(ctx context.Context, key string) error {
	return r.do(ctx, OpDelete, key, func(ctx context.Context) error {
		return r.next.Delete(ctx, key)
	})
}
