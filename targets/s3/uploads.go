package s3

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/drctl/drctl/targets"
)

// AbortStaleUploads aborts the multipart uploads under prefix begun before
// olderThan: those of a process killed mid-upload, which S3 keeps (and
// bills) until aborted or removed by a lifecycle rule.
func (t *Target) AbortStaleUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	if err := t.b.BeginList(ctx, prefix); err != nil {
		return 0, err
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(t.b.Bucket), Prefix: aws.String(t.b.Key(prefix))}
	aborted := 0
	for {
		out, err := t.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, t.b.Fail(targets.OpList, prefix, t.classify(ctx, err, nil))
		}
		t.b.Seen()
		for _, u := range out.Uploads {
			k, ok := t.b.Unkey(aws.ToString(u.Key))
			if !ok || !aws.ToTime(u.Initiated).Before(olderThan) {
				continue
			}
			if err := t.b.Begin(ctx, targets.OpDelete, k); err != nil {
				return aborted, err
			}
			if _, err := t.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(t.b.Bucket), Key: u.Key, UploadId: u.UploadId,
			}); err != nil {
				if err := t.classify(ctx, err, nil); !errors.Is(err, targets.ErrNotFound) {
					return aborted, t.b.Fail(targets.OpDelete, k, err)
				}
				continue // completed or aborted meanwhile
			}
			t.b.Seen()
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			return aborted, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
