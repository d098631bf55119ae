package s3compat

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util"
)

func (t *Target) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	if err := t.b.Begin(ctx, targets.OpGet, key); err != nil {
		return nil, targets.ObjectInfo{}, err
	}
	body, oi, _, err := t.core.GetObject(ctx, t.b.Bucket, t.b.Key(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, targets.ObjectInfo{}, t.b.Fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	data, err := s3util.ReadBody(body, oi.Size)
	if err != nil {
		return nil, targets.ObjectInfo{}, t.b.Fail(targets.OpGet, key, t.classify(ctx, err, nil))
	}
	t.b.Seen()
	return data, targets.ObjectInfo{Key: key, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}, nil
}

func (t *Target) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	return t.b.GetRange(ctx, key, off, length, t.Stat, func() ([]byte, error) {
		var opts minio.GetObjectOptions
		if err := opts.SetRange(off, off+length-1); err != nil {
			return nil, t.b.Fail(targets.OpGetRange, key, err)
		}
		body, oi, _, err := t.core.GetObject(ctx, t.b.Bucket, t.b.Key(key), opts)
		if err != nil {
			return nil, t.b.Fail(targets.OpGetRange, key, t.classify(ctx, err, nil))
		}
		if oi.Size != length {
			// S3 shortens a range that runs past the end.
			body.Close()
			return nil, t.b.Fail(targets.OpGetRange, key, fmt.Errorf("bytes %d-%d: got %d bytes: %w", off, off+length, oi.Size, targets.ErrRange))
		}
		data, err := s3util.ReadBody(body, length)
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
	oi, err := t.client.StatObject(ctx, t.b.Bucket, t.b.Key(key), minio.StatObjectOptions{})
	if err != nil {
		err = t.b.StatMissing(ctx, t.classify(ctx, err, nil), t.CheckBucket)
		return targets.ObjectInfo{}, t.b.Fail(targets.OpStat, key, err)
	}
	t.b.Seen()
	return targets.ObjectInfo{Key: key, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}, nil
}

// condition is the precondition of a write.
type condition struct {
	ifNoneMatch bool   // create only
	ifMatch     string // replace only this version
	lost        error  // the sentinel when the precondition fails
}

// apply sets the condition's headers on opts.
func (c condition) apply(opts *minio.PutObjectOptions) {
	if c.ifNoneMatch {
		opts.SetMatchETagExcept("*")
	}
	if c.ifMatch != "" {
		opts.SetMatchETag(strings.Trim(c.ifMatch, `"`))
	}
}

func (t *Target) Put(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPut, key, data, condition{})
}

func (t *Target) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPutIfAbsent, key, data, condition{ifNoneMatch: true, lost: targets.ErrExists})
}

func (t *Target) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (targets.ObjectInfo, error) {
	return t.put(ctx, targets.OpPutIfMatch, key, data, condition{ifMatch: etag, lost: targets.ErrPrecondition})
}

// put writes data in one request, or in parts above PartSize (see
// multipart.go). ModTime of the result is the client's clock.
func (t *Target) put(ctx context.Context, op targets.Op, key string, data []byte, cond condition) (targets.ObjectInfo, error) {
	if err := t.b.Begin(ctx, op, key); err != nil {
		return targets.ObjectInfo{}, err
	}
	// A plain signed payload instead of minio-go's default streaming
	// (aws-chunked) signature over http: versitygw 1.8 leaves the chunk
	// framing of an empty body unread on the connection and answers it
	// with a stray 400. The hash is computed here so the server still
	// verifies the payload.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}
	t.retain(key, &opts)
	var etag string
	var err error
	if int64(len(data)) > t.b.PartSize {
		etag, err = t.putMultipart(ctx, key, data, cond, opts)
	} else {
		cond.apply(&opts)
		var info minio.UploadInfo
		info, err = t.core.PutObject(ctx, t.b.Bucket, t.b.Key(key), bytes.NewReader(data), int64(len(data)), t.md5(data), sha256Hex(data), opts)
		etag = info.ETag
	}
	if err != nil {
		return targets.ObjectInfo{}, t.b.Fail(op, key, t.classify(ctx, err, cond.lost))
	}
	t.b.Seen()
	return targets.ObjectInfo{Key: key, Size: int64(len(data)), ETag: strings.Trim(etag, `"`), ModTime: time.Now()}, nil
}

// retain sets the Object Lock retention of key, if it gets one, on opts.
func (t *Target) retain(key string, opts *minio.PutObjectOptions) {
	if mode, until, ok := t.lock.Retention(key, time.Now()); ok {
		opts.Mode, opts.RetainUntilDate = minio.RetentionMode(mode), until
	}
}

// md5 is the Content-MD5 of a PUT or part: "" (none) unless the target
// writes with Object Lock. S3 refuses a write with retention, or into a
// bucket with a default retention, that carries neither Content-MD5 nor
// an x-amz-checksum; the signed payload hash minio-go sends does not
// count, and its checksums need trailing headers, which stay off.
func (t *Target) md5(b []byte) string {
	if t.lock == nil {
		return ""
	}
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// List follows minio-go's paginated listing. minio-go ends a listing
// silently when ctx is cancelled, so ctx is checked after it.
func (t *Target) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	if err := t.b.BeginList(ctx, prefix); err != nil {
		return err
	}
	noOwner := false
	objects := t.client.ListObjectsIter(ctx, t.b.Bucket, minio.ListObjectsOptions{
		Prefix: t.b.Key(prefix), Recursive: true, MaxKeys: t.b.ListPageSize, FetchOwner: &noOwner,
	})
	for o := range objects {
		if o.Err != nil {
			return t.b.Fail(targets.OpList, prefix, t.classify(ctx, o.Err, nil))
		}
		if err := ctx.Err(); err != nil {
			return t.b.Fail(targets.OpList, prefix, err)
		}
		k, ok := t.b.Unkey(o.Key)
		if !ok {
			continue
		}
		if err := fn(targets.ObjectInfo{Key: k, Size: o.Size, ETag: o.ETag, ModTime: o.LastModified}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return t.b.Fail(targets.OpList, prefix, err)
	}
	t.b.Seen()
	return nil
}

func (t *Target) Delete(ctx context.Context, key string) error {
	if err := t.b.Begin(ctx, targets.OpDelete, key); err != nil {
		return err
	}
	err := t.client.RemoveObject(ctx, t.b.Bucket, t.b.Key(key), minio.RemoveObjectOptions{})
	if err != nil {
		err = t.classify(ctx, err, nil)
		if errors.Is(err, targets.ErrNotFound) {
			return nil
		}
		return t.b.Fail(targets.OpDelete, key, err)
	}
	return nil
}
