package repo_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/s3compat"
)

// TestPruneAbortsStaleUploads: a writer killed in the middle of a pack's
// multipart upload leaves the upload in the bucket, unlisted and billed.
// Prune, on a real S3 server and through the retry wrapper, aborts the
// pack uploads older than StaleUploadAge under the repository, and leaves
// younger ones (an upload in progress) and other prefixes alone.
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
	raw := srv.Client()
	begin := func(key string) {
		if _, err := raw.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	begin("repo/data/ab/killed")
	begin("other/data/ab/not-ours")
	time.Sleep(1100 * time.Millisecond) // S3 times have whole seconds
	begin("repo/data/cd/in-progress")

	res, err := r.Prune(ctx, repo.PruneOptions{Grace: -1, StaleUploadAge: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.UploadsAborted != 1 {
		t.Fatalf("aborted %d uploads, want 1", res.UploadsAborted)
	}
	out, err := raw.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, u := range out.Uploads {
		left = append(left, aws.ToString(u.Key))
	}
	if len(left) != 2 || left[0] != "other/data/ab/not-ours" || left[1] != "repo/data/cd/in-progress" {
		t.Fatalf("uploads left %v, want the other prefix's and the one in progress", left)
	}
}
