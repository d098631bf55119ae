package targets

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"
)

// rateBurst is the most bytes one wait lets through: small enough that a
// 16 MiB pack is shaped into a steady stream, large enough that waiting
// costs nothing at WAN rates.
const rateBurst = 256 << 10

// RateLimited caps the bytes a Target uploads per second, so that
// replication does not saturate the WAN link it shares with production.
// One Limiter can be shared by the targets of several repositories to cap
// a whole host. Downloads are not limited: they are what a recovery needs
// as fast as possible.
type RateLimited struct {
	Target
	lim *rate.Limiter
}

// NewLimiter returns a limiter of bytesPerSec for NewRateLimited.
func NewLimiter(bytesPerSec int64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(bytesPerSec), rateBurst)
}

// NewRateLimited wraps t so that its uploads share lim.
func NewRateLimited(t Target, lim *rate.Limiter) *RateLimited {
	return &RateLimited{Target: t, lim: lim}
}

// Unwrap returns the wrapped target.
func (r *RateLimited) Unwrap() Target { return r.Target }

// wait takes n bytes from the limiter, in bursts.
func (r *RateLimited) wait(ctx context.Context, n int) error {
	for n > 0 {
		k := min(n, rateBurst)
		if err := r.lim.WaitN(ctx, k); err != nil {
			return fmt.Errorf("upload rate limit: %w", err)
		}
		n -= k
	}
	return nil
}

func (r *RateLimited) Put(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	if err := r.wait(ctx, len(data)); err != nil {
		return ObjectInfo{}, err
	}
	return r.Target.Put(ctx, key, data)
}

func (r *RateLimited) PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	if err := r.wait(ctx, len(data)); err != nil {
		return ObjectInfo{}, err
	}
	return r.Target.PutIfAbsent(ctx, key, data)
}

func (r *RateLimited) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error) {
	if err := r.wait(ctx, len(data)); err != nil {
		return ObjectInfo{}, err
	}
	return r.Target.PutIfMatch(ctx, key, data, etag)
}
