package s3util

import (
	"context"
	"sync"
	"time"
)

// abortTimeout bounds the abort of a failed upload, which runs even when
// the caller's context was cancelled.
const abortTimeout = 30 * time.Second

// Multipart is one created multipart upload, with the calls of a client
// library that fill, complete and abort it. P is the library's record of
// an uploaded part.
type Multipart[P any] struct {
	PartSize    int64
	Concurrency int
	// Part uploads part number num (from 1) of the object.
	Part func(ctx context.Context, num int, part []byte) (P, error)
	// Complete completes the upload, under the write's condition, and
	// returns the object's ETag.
	Complete func(ctx context.Context, parts []P) (etag string, err error)
	// Abort aborts the upload. Its own failure is not reported: the
	// caller already has the error that made it abort.
	Abort func(ctx context.Context)
	// Gone reports whether the upload no longer exists (listing its parts
	// answers NoSuchUpload). A part whose request was cut on our side may
	// still land on the server after the abort and revive the upload, so
	// Run aborts again until the upload is gone.
	Gone func(ctx context.Context) bool
}

// abortChecks is how often an abort is checked and repeated.
const abortChecks = 5

// Run uploads data in parts and completes the upload. A failed upload is
// aborted, so its parts do not linger (and cost) in the bucket.
func (m Multipart[P]) Run(ctx context.Context, data []byte) (etag string, err error) {
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			m.abort(actx)
		}
	}()
	parts, err := m.upload(ctx, data)
	if err != nil {
		return "", err
	}
	return m.Complete(ctx, parts)
}

// upload sends the parts, Concurrency at a time; the first failure
// cancels the rest.
func (m Multipart[P]) upload(ctx context.Context, data []byte) ([]P, error) {
	size := m.PartSize
	n := (int64(len(data)) + size - 1) / size
	parts := make([]P, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, m.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := m.Part(ctx, int(i+1), data[i*size:min((i+1)*size, int64(len(data)))])
			if err != nil {
				cancel(err)
				return
			}
			parts[i] = p
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return parts, nil
}

// abort aborts the upload and repeats it, with growing pauses, while the
// upload still exists.
func (m Multipart[P]) abort(ctx context.Context) {
	wait := 50 * time.Millisecond
	for i := 0; ; i++ {
		m.Abort(ctx)
		if m.Gone == nil || i == abortChecks-1 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if m.Gone(ctx) {
			return
		}
		wait *= 2
	}
}
