package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util"
)

func (t *Target) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	if err := t.b.Begin(ctx, targets.OpGet, key); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	out, err := t.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(t.b.Bucket), Key: aws.String(t.b.Key(key))})
	if err != nil {
		return nil, targets.ObjectInfo{}, t.b.Fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	data, err := s3util.ReadBody(out.Body, aws.ToInt64(out.ContentLength))
	if err != nil {
		return nil, targets.ObjectInfo{}, t.b.Fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	t.b.Seen()
	return data, targets.ObjectInfo{
		Key: key, Size: int64(len(data)), ETag: trimETag(out.ETag), ModTime: aws.ToTime(out.LastModified),
	}, nil
}

func (t *Target) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	return t.b.GetRange(ctx, key, off, length, t.Stat, func() ([]byte, error) {
		out, err := t.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(t.b.Bucket), Key: aws.String(t.b.Key(key)),
			Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1)),
		})
		if err != nil {
			return nil, t.b.Fail(targets.OpGetRange, key, t.classify(ctx, err, nil))
		}
		n := aws.ToInt64(out.ContentLength)
		if n != length {
			// S3 shortens a range that runs past the end.
			out.Body.Close()
			return nil, t.b.Fail(targets.OpGetRange, key, fmt.Errorf("bytes %d-%d: got %d bytes (%s): %w",
				off, off+length, n, aws.ToString(out.ContentRange), targets.ErrRange))
		}
		data, err := s3util.ReadBody(out.Body, n)
		if err != nil {
			return nil, t.b.Fail(targets.OpGetRange, key, t.classify(ctx, err, nil))
		}
		return data, nil
	})
}

// Stat is a HEAD, whose 404 needs a second look: see
// s3util.Bucket.StatMissing.
func (t *Target) Stat(ctx context.Context, key string) (targets.ObjectInfo, error) {
	if err := t.b.Begin(ctx, targets.OpStat, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	out, err := t.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(t.b.Bucket), Key: aws.String(t.b.Key(key))})
	if err != nil {
		err = t.b.StatMissing(ctx, t.classify(ctx, err, nil), t.CheckBucket)
		return targets.ObjectInfo{}, t.b.Fail(targets.OpStat, key, err)
	}
	t.b.Seen()
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

// retention is the Object Lock retention of one write; the zero value is
// none.
type retention struct {
	mode  types.ObjectLockMode
	until *time.Time
}

func (t *Target) retention(key string) retention {
	mode, until, ok := t.lock.Retention(key, time.Now())
	if !ok {
		return retention{}
	}
	return retention{mode: types.ObjectLockMode(mode), until: &until}
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
	if err := t.b.Begin(ctx, op, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	var etag string
	var err error
	ret := t.retention(key)
	if int64(len(data)) > t.b.MultipartThreshold {
		etag, err = t.putMultipart(ctx, key, data, cond, ret)
	} else {
		in := &s3.PutObjectInput{
			Bucket: aws.String(t.b.Bucket), Key: aws.String(t.b.Key(key)),
			Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
			IfNoneMatch: cond.ifNoneMatch, IfMatch: cond.ifMatch,
			ObjectLockMode: ret.mode, ObjectLockRetainUntilDate: ret.until,
		}
		if t.lock != nil {
			// S3 refuses a PUT with retention (or into a bucket with a
			// default retention) that carries no Content-MD5 or checksum.
			// The SDK adds a CRC32 by default, but not when the AWS
			// configuration says "when_required"; asking for it always
			// sends it.
			in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
		}
		var out *s3.PutObjectOutput
		out, err = t.client.PutObject(ctx, in)
		if err == nil {
			etag = trimETag(out.ETag)
		}
	}
	if err != nil {
		return targets.ObjectInfo{}, t.b.Fail(op, key, t.classify(ctx, err, cond.lost))
	}
	t.b.Seen()
	return targets.ObjectInfo{Key: key, Size: int64(len(data)), ETag: etag, ModTime: time.Now()}, nil
}

func (t *Target) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	if err := t.b.BeginList(ctx, prefix); err != nil {
		return err
	}
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(t.b.Bucket), Prefix: aws.String(t.b.Key(prefix)), MaxKeys: aws.Int32(int32(t.b.ListPageSize)),
	}
	for {
		out, err := t.client.ListObjectsV2(ctx, in)
		if err != nil {
			return t.b.Fail(targets.OpList, prefix, t.classify(ctx, err, nil))
		}
		t.b.Seen()
		for _, o := range out.Contents {
			if err := ctx.Err(); err != nil {
				return t.b.Fail(targets.OpList, prefix, err)
			}
			k, ok := t.b.Unkey(aws.ToString(o.Key))
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
			return t.b.Fail(targets.OpList, prefix, errors.New("truncated listing without a continuation token"))
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

func (t *Target) Delete(ctx context.Context, key string) error {
	if err := t.b.Begin(ctx, targets.OpDelete, key); err != nil {
		return err
	}
	_, err := t.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(t.b.Bucket), Key: aws.String(t.b.Key(key))})
	if err != nil {
		err = t.classify(ctx, err, nil)
		if errors.Is(err, targets.ErrNotFound) {
			return nil
		}
		return t.b.Fail(targets.OpDelete, key, err)
	}
	return nil
}
