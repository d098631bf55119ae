package repo_test

import (
	"testing"
	"time"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/s3compat"
)

// TestPruneAbortsStaleUploads: a writer killed in the middle of a pack's
// multipart upload leaves the upload in the bucket, unlisted and billed.
// Prune, on a real S3 server and through the retry wrapper, leaves an
// upload younger than StaleUploadAge alone (one may be in progress),
// aborts it once older, and never touches other prefixes.
func TestPruneAbortsStaleUploads(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	tg, err := s3compat.New(s3compat.Options{Endpoint: srv.Endpoint, Bucket: bucket, Prefix: "repo", Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	r := initRepo(t, targets.NewRetry(tg, targets.FastRetryOptions()))
	ctx := t.Context()
	for _, key := range []string{"repo/data/ab/killed", "other/data/ab/not-ours"} {
		srv.BeginUpload(t, bucket, key)
	}
	uploads := func() []string { return srv.Uploads(t, bucket) }

	res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1})
	if err != nil || res.UploadsAborted != 0 || len(uploads()) != 2 {
		t.Fatalf("prune with the default age (a day): aborted %d, %v; uploads left %v", res.UploadsAborted, err, uploads())
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have whole seconds
	res, err = r.Prune(ctx, repo.PruneOptions{Grace: -1, StaleUploadAge: time.Millisecond})
	if err != nil || res.UploadsAborted != 1 {
		t.Fatalf("prune once the upload is stale: aborted %d, %v", res.UploadsAborted, err)
	}
	if left := uploads(); len(left) != 1 || left[0] != "other/data/ab/not-ours" {
		t.Fatalf("uploads left %v, want only the other prefix's", left)
	}
}
