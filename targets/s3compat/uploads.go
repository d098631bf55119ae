package s3compat

import (
	"context"
	"errors"
	"time"

	"github.com/drctl/drctl/targets"
)

// AbortStaleUploads aborts the multipart uploads under prefix begun before
// olderThan: those of a process killed mid-upload, which the store keeps
// (and bills) until aborted or removed by a lifecycle rule.
func (t *Target) AbortStaleUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	if err := t.b.BeginList(ctx, prefix); err != nil {
		return 0, err
	}
	keyMarker, idMarker := "", ""
	aborted := 0
	for {
		out, err := t.core.ListMultipartUploads(ctx, t.b.Bucket, t.b.Key(prefix), keyMarker, idMarker, "", 1000)
		if err != nil {
			return aborted, t.b.Fail(targets.OpList, prefix, t.classify(ctx, err, nil))
		}
		t.b.Seen()
		for _, u := range out.Uploads {
			k, ok := t.b.Unkey(u.Key)
			if !ok || !u.Initiated.Before(olderThan) {
				continue
			}
			if err := t.b.Begin(ctx, targets.OpDelete, k); err != nil {
				return aborted, err
			}
			if err := t.core.AbortMultipartUpload(ctx, t.b.Bucket, u.Key, u.UploadID); err != nil {
				if err := t.classify(ctx, err, nil); !errors.Is(err, targets.ErrNotFound) {
					return aborted, t.b.Fail(targets.OpDelete, k, err)
				}
				continue // completed or aborted meanwhile
			}
			t.b.Seen()
			aborted++
		}
		if !out.IsTruncated {
			return aborted, nil
		}
		keyMarker, idMarker = out.NextKeyMarker, out.NextUploadIDMarker
	}
}
