package s3compat

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// abortTimeout bounds the abort of a failed upload, which runs even when
// the caller's context was cancelled.
const abortTimeout = 30 * time.Second

// putMultipart uploads data in parts with minio-go's low-level calls and
// completes the upload with the write's condition. minio-go's PutObject
// cannot be used for conditional writes: its multipart path (v7.4.1)
// drops If-None-Match / If-Match from the completion request, so a large
// "create-only" write would silently overwrite. A failed upload is
// aborted, so its parts do not linger (and cost) in the bucket.
func (t *Target) putMultipart(ctx context.Context, key string, data []byte, cond condition) (etag string, err error) {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	uploadID, err := t.core.NewMultipartUpload(ctx, t.bucket, t.key(key), opts)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			t.core.AbortMultipartUpload(actx, t.bucket, t.key(key), uploadID)
		}
	}()
	parts, err := t.uploadParts(ctx, key, uploadID, data)
	if err != nil {
		return "", err
	}
	cond.apply(&opts)
	info, err := t.core.CompleteMultipartUpload(ctx, t.bucket, t.key(key), uploadID, parts, opts)
	if err != nil {
		return "", err
	}
	return info.ETag, nil
}

// uploadParts sends the parts, Concurrency at a time; the first failure cancels
// the rest.
func (t *Target) uploadParts(ctx context.Context, key, uploadID string, data []byte) ([]minio.CompletePart, error) {
	size := t.opts.PartSize
	n := (int64(len(data)) + size - 1) / size
	parts := make([]minio.CompletePart, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, t.opts.Concurrency)
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
			part := data[i*size : min((i+1)*size, int64(len(data)))]
			p, err := t.core.PutObjectPart(ctx, t.bucket, t.key(key), uploadID, int(i+1),
				bytes.NewReader(part), int64(len(part)),
				minio.PutObjectPartOptions{Sha256Hex: sha256Hex(part), DisableContentSha256: true})
			if err != nil {
				cancel(err)
				return
			}
			parts[i] = minio.CompletePart{PartNumber: int(i + 1), ETag: p.ETag}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return parts, nil
}
