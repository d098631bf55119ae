package open_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
	"github.com/drctl/drctl/targets/open"
	"github.com/drctl/drctl/targets/s3"
	"github.com/drctl/drctl/targets/s3compat"
)

func TestOpenLocal(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "repo")
	_, err := open.Open(ctx, dir, open.Options{})
	if !errors.Is(err, targets.ErrNoBucket) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open(missing dir) = %v", err)
	}
	tg, err := open.Open(ctx, "local:"+dir, open.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.(*targets.Retry); !ok {
		t.Errorf("Open returned %T, want the retry wrapper", tg)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("Create did not make the directory: %v", err)
	}
	tg, err = open.Open(ctx, dir, open.Options{NoRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.(*local.Target); !ok {
		t.Errorf("Open with NoRetry returned %T", tg)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, err := open.Open(ctx, "ftp://host/x", open.Options{})
	if err == nil || !strings.Contains(err.Error(), "accepted forms") {
		t.Errorf("Open(ftp) = %v", err)
	}
	_, err = open.Open(ctx, "s3:http://127.0.0.1:1/bucket", open.Options{})
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("Open without keys = %v", err)
	}
}

// TestOpenAWS builds an s3:aws target without sending anything.
func TestOpenAWS(t *testing.T) {
	tg, err := open.Open(t.Context(), "s3:aws/my-bucket/repo", open.Options{
		Region: "eu-central-1", AccessKey: "k", SecretKey: "s", NoRetry: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tg.(*s3.Target); !ok || tg.String() != "s3:aws/my-bucket/repo" {
		t.Fatalf("Open = %T %s", tg, tg)
	}
}

func TestOpenS3Compat(t *testing.T) {
	ctx := t.Context()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	keys := open.Options{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Create: true}

	url := "s3:" + srv.Endpoint + "/" + bucket + "/repo"
	tg, err := open.Open(ctx, url, keys)
	if err != nil {
		t.Fatal(err)
	}
	if tg.String() != url {
		t.Errorf("String() = %q, want %q", tg.String(), url)
	}
	if _, err := tg.PutIfAbsent(ctx, "config", []byte("c")); err != nil {
		t.Fatal(err)
	}
	// The URL-style form reaches the same objects.
	keys.NoRetry = true
	tg2, err := open.Open(ctx, "s3://"+bucket+"/repo?endpoint="+srv.Endpoint, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tg2.(*s3compat.Target); !ok {
		t.Fatalf("Open = %T", tg2)
	}
	if _, _, err := tg2.Get(ctx, "config"); err != nil {
		t.Fatal(err)
	}

	_, err = open.Open(ctx, "s3:"+srv.Endpoint+"/nope", keys)
	want := "bucket nope does not exist at " + srv.Endpoint + ": create it first"
	if !errors.Is(err, targets.ErrNoBucket) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Create on a missing bucket = %v, want %q", err, want)
	}
}

func TestOpenObjectLock(t *testing.T) {
	ctx := t.Context()
	lock := &targets.ObjectLock{Mode: targets.LockCompliance, Days: 7}

	dir := filepath.Join(t.TempDir(), "repo")
	_, err := open.Open(ctx, dir, open.Options{Create: true, ObjectLock: lock})
	if !errors.Is(err, targets.ErrNoObjectLock) || !strings.Contains(err.Error(), "object lock needs an S3 bucket with Object Lock enabled") {
		t.Fatalf("Open(local dir) with object lock = %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused open created the directory: %v", err)
	}

	srv := s3test.Start(t)
	keys := open.Options{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, ObjectLock: lock}
	plain := srv.NewBucket(t)
	_, err = open.Open(ctx, "s3:"+srv.Endpoint+"/"+plain+"/repo", keys)
	want := "bucket " + plain + " at " + srv.Endpoint + " does not have Object Lock enabled"
	if !errors.Is(err, targets.ErrNoObjectLock) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open of a bucket without Object Lock = %v, want %q", err, want)
	}

	bad := keys
	bad.ObjectLock = &targets.ObjectLock{Mode: "governance", Days: 7}
	if _, err := open.Open(ctx, "s3:"+srv.Endpoint+"/"+plain+"/repo", bad); err == nil || !strings.Contains(err.Error(), `mode "governance"`) {
		t.Fatalf("Open with a bad mode = %v", err)
	}

	// Keys default to the repository's immutable objects.
	locked := srv.NewLockedBucket(t)
	tg, err := open.Open(ctx, "s3:"+srv.Endpoint+"/"+locked+"/repo", keys)
	if err != nil {
		t.Fatalf("Open of a locked bucket: %v", err)
	}
	for key, want := range map[string]string{"config": "COMPLIANCE", "fence/web1": ""} {
		if _, err := tg.Put(ctx, key, []byte("c")); err != nil {
			t.Fatal(err)
		}
		out, err := srv.Client().GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String(locked), Key: aws.String("repo/" + key)})
		got := "" // an object without retention answers an error
		if err == nil && out.Retention != nil {
			got = string(out.Retention.Mode)
		}
		if got != want {
			t.Errorf("retention of %s: %q (%v), want %q", key, got, err, want)
		}
	}
}
