package s3compat

import (
	"bytes"
	"context"

	"github.com/minio/minio-go/v7"

	"github.com/drctl/drctl/targets/internal/s3util"
)

// putMultipart uploads data in parts with minio-go's low-level calls and
// completes the upload with the write's condition. minio-go's PutObject
// cannot be used for conditional writes: its multipart path (v7.4.1)
// drops If-None-Match / If-Match from the completion request, so a large
// "create-only" write would silently overwrite. opts are the object's
// settings (content type, retention), sent at creation.
func (t *Target) putMultipart(ctx context.Context, key string, data []byte, cond condition, opts minio.PutObjectOptions) (string, error) {
	bucket, k := t.b.Bucket, t.b.Key(key)
	uploadID, err := t.core.NewMultipartUpload(ctx, bucket, k, opts)
	if err != nil {
		return "", err
	}
	return s3util.Multipart[minio.CompletePart]{
		PartSize: t.b.PartSize, Concurrency: t.b.Concurrency,
		Part: func(ctx context.Context, num int, part []byte) (minio.CompletePart, error) {
			p, err := t.core.PutObjectPart(ctx, bucket, k, uploadID, num,
				bytes.NewReader(part), int64(len(part)),
				minio.PutObjectPartOptions{Md5Base64: t.md5(part), Sha256Hex: sha256Hex(part), DisableContentSha256: true})
			if err != nil {
				return minio.CompletePart{}, err
			}
			return minio.CompletePart{PartNumber: num, ETag: p.ETag}, nil
		},
		Complete: func(ctx context.Context, parts []minio.CompletePart) (string, error) {
			// minio-go sends every header of its options with the
			// completion too; retention belongs to the creation only.
			var complete minio.PutObjectOptions
			cond.apply(&complete)
			info, err := t.core.CompleteMultipartUpload(ctx, bucket, k, uploadID, parts, complete)
			if err != nil {
				return "", err
			}
			return info.ETag, nil
		},
		Abort: func(ctx context.Context) {
			t.core.AbortMultipartUpload(ctx, bucket, k, uploadID)
		},
		Gone: func(ctx context.Context) bool {
			_, err := t.core.ListObjectParts(ctx, bucket, k, uploadID, 0, 1)
			return minio.ToErrorResponse(err).Code == "NoSuchUpload"
		},
	}.Run(ctx, data)
}
