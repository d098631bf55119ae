package s3

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// abortTimeout bounds the abort of a failed upload, which runs even when
// the caller's context was cancelled.
const abortTimeout = 30 * time.Second

// putMultipart uploads data in parts and completes the upload under cond:
// S3 evaluates If-None-Match / If-Match at completion, so a create-only or
// compare-and-swap write stays atomic whatever its size. A failed upload is
// aborted, so its parts do not linger (and cost) in the bucket.
func (t *Target) putMultipart(ctx context.Context, key string, data []byte, cond condition) (etag string, err error) {
	// The parts carry CRC32 checksums (the SDK's default for a part);
	// declaring it at creation makes S3 verify them again at completion.
	created, err := t.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			t.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)), UploadId: created.UploadId,
			})
		}
	}()
	parts, err := t.uploadParts(ctx, key, created.UploadId, data)
	if err != nil {
		return "", err
	}
	out, err := t.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)), UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     cond.ifNoneMatch, IfMatch: cond.ifMatch,
	})
	if err != nil {
		return "", err
	}
	return trimETag(out.ETag), nil
}

// uploadParts sends the parts, Concurrency at a time; the first failure
// cancels the rest.
func (t *Target) uploadParts(ctx context.Context, key string, uploadID *string, data []byte) ([]types.CompletedPart, error) {
	size := t.opts.PartSize
	n := (int64(len(data)) + size - 1) / size
	parts := make([]types.CompletedPart, n)
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
			num := aws.Int32(int32(i + 1))
			out, err := t.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)), UploadId: uploadID,
				PartNumber: num, Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part))),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			if err != nil {
				cancel(err)
				return
			}
			parts[i] = types.CompletedPart{PartNumber: num, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return parts, nil
}
