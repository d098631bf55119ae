package s3test_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/drctl/drctl/internal/s3test"
)

func TestServer(t *testing.T) {
	srv := s3test.Start(t)
	resp, err := http.Get(srv.Endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous GET / = %s, want 403", resp.Status)
	}
	a, b := srv.NewBucket(t), srv.NewBucket(t)
	if a == b {
		t.Fatalf("bucket name %s reused", a)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := http.Get(srv.Endpoint + "/"); err == nil {
		t.Fatalf("the server still answers after Stop")
	}
}

// TestLockedBucket checks what the Object Lock tests of the targets rely
// on: which buckets have Object Lock and versioning, on a server started
// with and without versioning.
func TestLockedBucket(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      s3test.Options
		versioned types.BucketVersioningStatus
	}{
		{"versioning", s3test.Options{}, types.BucketVersioningStatusEnabled},
		{"no versioning", s3test.Options{NoVersioning: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			srv := s3test.StartWith(t, tc.opts)
			c := srv.Client()
			locked, plain := srv.NewLockedBucket(t), srv.NewBucket(t)
			lc, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(locked)})
			if err != nil || lc.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
				t.Fatalf("object lock of a locked bucket: %+v, %v", lc, err)
			}
			v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(locked)})
			if err != nil || v.Status != tc.versioned {
				t.Errorf("versioning of a locked bucket: %q, %v; want %q", v.Status, err, tc.versioned)
			}
			_, err = c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(plain)})
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != "ObjectLockConfigurationNotFoundError" {
				t.Errorf("object lock of a plain bucket: %v", err)
			}
		})
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("DRCTL_VERSITYGW", "/nonexistent/versitygw")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir()) // no go.mod above
	_, err := s3test.StartServer()
	if err == nil || !strings.Contains(err.Error(), "make test") || !strings.Contains(err.Error(), "/nonexistent/versitygw") {
		t.Fatalf("StartServer without a binary = %v, want advice to run make test", err)
	}
}

func TestFlakyProxy(t *testing.T) {
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "host="+r.Host)
	})
	up := httptest.NewServer(backend)
	defer up.Close()
	p := s3test.NewFlakyProxy(t, up.URL)
	p.Next(s3test.Unavailable, s3test.Forbidden, s3test.Drop)

	// No connection reuse: net/http silently retries a GET that fails on
	// a reused connection, which would hide the drop.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (int, string, error) {
		resp, err := client.Get(p.Endpoint + "/b/k")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	if code, body, _ := get(); code != 503 || !strings.Contains(body, "<Code>ServiceUnavailable</Code>") {
		t.Errorf("1st: %d %s", code, body)
	}
	if code, body, _ := get(); code != 403 || !strings.Contains(body, "<Code>AccessDenied</Code>") {
		t.Errorf("2nd: %d %s", code, body)
	}
	if _, _, err := get(); err == nil {
		t.Errorf("3rd: the connection was not dropped")
	}
	// Passed requests keep the Host the client signed.
	if code, body, _ := get(); code != 200 || body != "host="+strings.TrimPrefix(p.Endpoint, "http://") {
		t.Errorf("4th: %d %s", code, body)
	}
	if p.Requests() != 4 || p.Faulted() != 3 || p.Pending() != 0 {
		t.Errorf("requests %d, faulted %d, pending %d", p.Requests(), p.Faulted(), p.Pending())
	}
}

// TestDownUp checks a server taken down answers nothing, and comes back on
// the same address with its objects.
func TestDownUp(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	c := srv.Client()
	ctx := t.Context()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("kept")}); err != nil {
		t.Fatal(err)
	}
	srv.Down()
	if resp, err := http.Get(srv.Endpoint + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("the server answers while down")
	}
	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	if b, _ := io.ReadAll(out.Body); string(b) != "kept" {
		t.Fatalf("object after Up: %q", b)
	}
}
