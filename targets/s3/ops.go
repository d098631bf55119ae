package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/drctl/drctl/targets"
)

func (t *Target) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	if err := t.begin(ctx, targets.OpGet, key); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.key(key))})
	if err != nil {
		return nil, targets.ObjectInfo{}, t.fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	data, err := readBody(out.Body, aws.ToInt64(out.ContentLength))
	if err != nil {
		return nil, targets.ObjectInfo{}, t.fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	t.bucketOK.Store(true)
	return data, targets.ObjectInfo{
		Key: key, Size: int64(len(data)), ETag: trimETag(out.ETag), ModTime: aws.ToTime(out.LastModified),
	}, nil
}

// readBody reads and closes a response body of the announced size; a
// short body (a connection cut mid-transfer) is io.ErrUnexpectedEOF.
func readBody(body io.ReadCloser, size int64) ([]byte, error) {
	defer body.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(body, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return data, nil
}

func (t *Target) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	if err := t.begin(ctx, targets.OpGetRange, key); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, t.fail(targets.OpGetRange, key, fmt.Errorf("negative offset %d or length %d", off, length))
	}
	if length == 0 {
		// No HTTP range is empty; a stat checks the offset.
		info, err := t.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, t.fail(targets.OpGetRange, key, fmt.Errorf("offset %d of a %d-byte object: %w", off, info.Size, targets.ErrRange))
		}
		return []byte{}, nil
	}
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1)),
	})
	if err != nil {
		return nil, t.fail(targets.OpGetRange, key, t.classify(ctx, err, nil))
	}
	n := aws.ToInt64(out.ContentLength)
	if n != length {
		// S3 shortens a range that runs past the end.
		out.Body.Close()
		return nil, t.fail(targets.OpGetRange, key, fmt.Errorf("bytes %d-%d: got %d bytes (%s): %w",
			off, off+length, n, aws.ToString(out.ContentRange), targets.ErrRange))
	}
	data, err := readBody(out.Body, n)
	if err != nil {
		return nil, t.fail(targets.OpGetRange, key, t.classify(ctx, err, nil))
	}
	return data, nil
}

// Stat uses HEAD, whose 404 has no body to tell a missing key from a
// missing bucket. Until the bucket has been seen, a 404 is followed by a
// bucket check, so a wrong bucket name is reported as such.
func (t *Target) Stat(ctx context.Context, key string) (targets.ObjectInfo, error) {
	if err := t.begin(ctx, targets.OpStat, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	out, err := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.key(key))})
	if err != nil {
		err = t.classify(ctx, err, nil)
		if errors.Is(err, targets.ErrNotFound) && !t.bucketOK.Load() {
			if berr := t.CheckBucket(ctx); errors.Is(berr, targets.ErrNoBucket) {
				err = t.noBucket()
			}
		}
		return targets.ObjectInfo{}, t.fail(targets.OpStat, key, err)
	}
	t.bucketOK.Store(true)
	return targets.ObjectInfo{
		Key: key, Size: aws.ToInt64(out.ContentLength), ETag: trimETag(out.ETag), ModTime: aws.ToTime(out.LastModified),
	}, nil
}

// condition is the precondition of a write.
type condition struct {
	ifNoneMatch *string
	ifMatch     *string
	lost        error // the sentinel when the precondition fails
}

func (t *Target) Put(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPut, key, data, condition{})
}

func (t *Target) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPutIfAbsent, key, data,
		condition{ifNoneMatch: aws.String("*"), lost: targets.ErrExists})
}

func (t *Target) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPutIfMatch, key, data,
		condition{ifMatch: quoteETag(etag), lost: targets.ErrPrecondition})
}

// put writes in one request, or in parts above the multipart threshold.
// ModTime of the result is the client's clock: S3 does not return the
// server's on a write.
func (t *Target) put(ctx context.Context, op targets.Op, key string, data []byte, cond condition) (targets.ObjectInfo, error) {
	if err := t.begin(ctx, op, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	var etag string
	var err error
	if int64(len(data)) > t.opts.MultipartThreshold {
		etag, err = t.putMultipart(ctx, key, data, cond)
	} else {
		var out *s3.PutObjectOutput
		out, err = t.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(t.bucket), Key: aws.String(t.key(key)),
			Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
			IfNoneMatch: cond.ifNoneMatch, IfMatch: cond.ifMatch,
		})
		if err == nil {
			etag = trimETag(out.ETag)
		}
	}
	if err != nil {
		return targets.ObjectInfo{}, t.fail(op, key, t.classify(ctx, err, cond.lost))
	}
	t.bucketOK.Store(true)
	return targets.ObjectInfo{Key: key, Size: int64(len(data)), ETag: etag, ModTime: time.Now()}, nil
}

func (t *Target) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", targets.OpList, prefix, t.name, err)
	}
	if err := targets.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("%s in %s: %w", targets.OpList, t.name, err)
	}
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(t.bucket), Prefix: aws.String(t.prefix + prefix), MaxKeys: aws.Int32(int32(t.opts.ListPageSize)),
	}
	for {
		out, err := t.client.ListObjectsV2(ctx, in)
		if err != nil {
			return t.fail(targets.OpList, prefix, t.classify(ctx, err, nil))
		}
		t.bucketOK.Store(true)
		for _, o := range out.Contents {
			if err := ctx.Err(); err != nil {
				return t.fail(targets.OpList, prefix, err)
			}
			k, ok := strings.CutPrefix(aws.ToString(o.Key), t.prefix)
			if !ok {
				continue
			}
			if err := fn(targets.ObjectInfo{
				Key: k, Size: aws.ToInt64(o.Size), ETag: trimETag(o.ETag), ModTime: aws.ToTime(o.LastModified),
			}); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		if out.NextContinuationToken == nil {
			return t.fail(targets.OpList, prefix, errors.New("truncated listing without a continuation token"))
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

func (t *Target) Delete(ctx context.Context, key string) error {
	if err := t.begin(ctx, targets.OpDelete, key); err != nil {
		return err
	}
	_, err := t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.key(key))})
	if err != nil {
		err = t.classify(ctx, err, nil)
		if errors.Is(err, targets.ErrNotFound) {
			return nil
		}
		return t.fail(targets.OpDelete, key, err)
	}
	return nil
}
