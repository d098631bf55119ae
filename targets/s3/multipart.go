package s3

import (
	"bytes"
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/drctl/drctl/targets/internal/s3util"
)

// putMultipart uploads data in parts and completes the upload under cond:
// S3 evaluates If-None-Match / If-Match at completion, so a create-only or
// compare-and-swap write stays atomic whatever its size. Retention, if
// any, is declared at creation, where S3 takes it for the whole object.
func (t *Target) putMultipart(ctx context.Context, key string, data []byte, cond condition, ret retention) (string, error) {
	bucket, k := t.b.Bucket, t.b.Key(key)
	// The parts carry CRC32 checksums (the SDK's default for a part, and
	// what S3 requires of parts of an object with retention); declaring
	// it at creation makes S3 verify them again at completion.
	created, err := t.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(k), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		ObjectLockMode: ret.mode, ObjectLockRetainUntilDate: ret.until,
	})
	if err != nil {
		return "", err
	}
	return s3util.Multipart[types.CompletedPart]{
		PartSize: t.b.PartSize, Concurrency: t.b.Concurrency,
		Part: func(ctx context.Context, num int, part []byte) (types.CompletedPart, error) {
			n := aws.Int32(int32(num))
			out, err := t.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(bucket), Key: aws.String(k), UploadId: created.UploadId,
				PartNumber: n, Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part))),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			if err != nil {
				return types.CompletedPart{}, err
			}
			return types.CompletedPart{PartNumber: n, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}, nil
		},
		Complete: func(ctx context.Context, parts []types.CompletedPart) (string, error) {
			out, err := t.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(k), UploadId: created.UploadId,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
				IfNoneMatch:     cond.ifNoneMatch, IfMatch: cond.ifMatch,
			})
			if err != nil {
				return "", err
			}
			return trimETag(out.ETag), nil
		},
		Abort: func(ctx context.Context) {
			t.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(k), UploadId: created.UploadId})
		},
		Gone: func(ctx context.Context) bool {
			_, err := t.client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(k), UploadId: created.UploadId, MaxParts: aws.Int32(1)})
			var nsu *types.NoSuchUpload
			var api smithy.APIError
			return errors.As(err, &nsu) || (errors.As(err, &api) && api.ErrorCode() == "NoSuchUpload")
		},
	}.Run(ctx, data)
}
