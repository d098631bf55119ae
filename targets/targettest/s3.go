package targettest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
)

// S3Config is what an S3 target needs to reach the test server. The
// factory must use a 5 MiB part size, and ListPageSize, ObjectLock and
// Transport when they are set.
type S3Config struct {
	Endpoint     string
	Bucket       string
	AccessKey    string
	SecretKey    string
	ListPageSize int
	ObjectLock   *targets.ObjectLock
	Transport    http.RoundTripper
}

// RunS3 checks what only an S3 target has: error classification against
// a real server, retries through a flaky proxy (real client code facing
// 5xx, throttling, resets and lost answers), aborted multipart uploads,
// and request accounting. newTarget returns the bare target (no retry
// layer) for cfg.
func RunS3(t *testing.T, srv *s3test.Server, newTarget func(t *testing.T, cfg S3Config) targets.Target) {
	base := func(t *testing.T) S3Config {
		return S3Config{Endpoint: srv.Endpoint, Bucket: srv.NewBucket(t), AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	}
	t.Run("Errors", func(t *testing.T) { testS3Errors(t, base(t), newTarget) })
	t.Run("Transient", func(t *testing.T) { testS3Transient(t, srv, base(t), newTarget) })
	t.Run("LostAnswer", func(t *testing.T) { testS3LostAnswer(t, srv, base(t), newTarget) })
	t.Run("AbortMultipart", func(t *testing.T) { testS3Abort(t, srv, base(t), newTarget) })
	t.Run("StaleUploads", func(t *testing.T) { testS3StaleUploads(t, srv, base(t), newTarget) })
	t.Run("Requests", func(t *testing.T) { testS3Requests(t, base(t), newTarget) })
}

type bucketChecker interface {
	CheckBucket(ctx context.Context) error
}

func testS3Errors(t *testing.T, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	ctx := t.Context()
	good := newTarget(t, cfg)
	put(t, good, "k", []byte("v"))

	bad := cfg
	bad.SecretKey = "wrong"
	_, _, err := newTarget(t, bad).Get(ctx, "k")
	mustBe(t, "Get with a wrong secret", err, targets.ErrAccessDenied)
	if targets.IsTransient(err) {
		t.Errorf("access denied is transient: %v", err)
	}

	missing := cfg
	missing.Bucket = "no-such-bucket"
	tg := newTarget(t, missing)
	for name, err := range map[string]error{
		"Get":         func() error { _, _, err := tg.Get(ctx, "k"); return err }(),
		"Stat":        func() error { _, err := tg.Stat(ctx, "k"); return err }(),
		"Put":         func() error { _, err := tg.Put(ctx, "k", []byte("v")); return err }(),
		"List":        tg.List(ctx, "", func(targets.ObjectInfo) error { return nil }),
		"CheckBucket": tg.(bucketChecker).CheckBucket(ctx),
	} {
		mustBe(t, name+" in a missing bucket", err, targets.ErrNoBucket)
		if msg := err.Error(); !strings.Contains(msg, "bucket no-such-bucket does not exist at "+cfg.Endpoint) {
			t.Errorf("%s: %q does not name the bucket and endpoint", name, msg)
		}
	}
	if err := good.(bucketChecker).CheckBucket(ctx); err != nil {
		t.Errorf("CheckBucket of an existing bucket: %v", err)
	}

	// Nothing listens on a port just closed: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := cfg
	down.Endpoint = "http://" + l.Addr().String()
	l.Close()
	_, err = newTarget(t, down).Put(ctx, "k", []byte("v"))
	if !targets.IsTransient(err) || !strings.Contains(err.Error(), `put "k"`) || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Errorf("Put to a closed port: %v, want a transient error naming the op, key and endpoint", err)
	}
}

// testS3Transient sends each kind of fault through the retry layer: the
// transient ones are retried until the call succeeds, the permanent one
// is not retried.
func testS3Transient(t *testing.T, srv *s3test.Server, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	proxy := s3test.NewFlakyProxy(t, srv.Endpoint)
	cfg.Endpoint = proxy.Endpoint
	tg := targets.NewRetry(newTarget(t, cfg), fastRetry(t))
	ctx := t.Context()
	for _, f := range []s3test.Fault{s3test.Unavailable, s3test.SlowDown, s3test.Throttled, s3test.Internal, s3test.Drop} {
		before := proxy.Requests()
		proxy.Fail(2, f)
		data := randomBytes(uint64(f), 1000)
		if _, err := tg.Put(ctx, "t", data); err != nil {
			t.Fatalf("Put after two faults %d: %v", f, err)
		}
		if n := proxy.Requests() - before; n != 3 {
			t.Errorf("fault %d: %d requests, want 3", f, n)
		}
		proxy.Fail(1, f)
		mustHold(t, tg, "t", data)
	}

	before := proxy.Requests()
	proxy.Fail(1, s3test.Forbidden)
	_, _, err := tg.Get(ctx, "t")
	mustBe(t, "Get answered 403", err, targets.ErrAccessDenied)
	if n := proxy.Requests() - before; n != 1 {
		t.Errorf("a 403 was retried: %d requests", n)
	}

	proxy.Fail(10, s3test.Unavailable)
	_, err = tg.Stat(ctx, "t")
	var ue *targets.UnavailableError
	if !errors.As(err, &ue) || !targets.IsTransient(err) || !strings.Contains(err.Error(), "unreachable or failing") {
		t.Errorf("Stat through a dead gateway: %v", err)
	}
}

// testS3LostAnswer: the server performs a create-only write but the answer
// is lost; the retry finds the key taken by its own bytes and succeeds.
func testS3LostAnswer(t *testing.T, srv *s3test.Server, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	proxy := s3test.NewFlakyProxy(t, srv.Endpoint)
	cfg.Endpoint = proxy.Endpoint
	tg := targets.NewRetry(newTarget(t, cfg), fastRetry(t))
	ctx := t.Context()
	proxy.Fail(1, s3test.DropAfter)
	info, err := tg.PutIfAbsent(ctx, "manifest", []byte("ours"))
	if err != nil {
		t.Fatalf("PutIfAbsent whose answer was lost: %v", err)
	}
	proxy.Fail(1, s3test.DropAfter)
	if _, err := tg.PutIfMatch(ctx, "manifest", []byte("ours, v2"), info.ETag); err != nil {
		t.Fatalf("PutIfMatch whose answer was lost: %v", err)
	}
	mustHold(t, tg, "manifest", []byte("ours, v2"))
	if proxy.Pending() != 0 {
		t.Fatalf("faults not used")
	}
}

// testS3Abort fails a part of a multipart upload: the call fails
// transiently and no upload is left behind.
func testS3Abort(t *testing.T, srv *s3test.Server, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	proxy := s3test.NewFlakyProxy(t, srv.Endpoint)
	cfg.Endpoint = proxy.Endpoint
	tg := newTarget(t, cfg)
	ctx := t.Context()
	data := randomBytes(30, 12<<20)
	for _, f := range []s3test.Fault{s3test.Internal, s3test.Drop} {
		proxy.Next(s3test.Pass, f) // the upload's creation passes, a part fails
		_, err := tg.PutIfAbsent(ctx, "big", data)
		if !targets.IsTransient(err) {
			t.Fatalf("PutIfAbsent with a failed part: %v, want a transient error", err)
		}
		mustNotFound(t, tg, "big")
		if left := srv.Uploads(t, cfg.Bucket); len(left) != 0 {
			t.Fatalf("multipart uploads left after a failure: %v", left)
		}
	}
	if _, err := tg.PutIfAbsent(ctx, "big", data); err != nil {
		t.Fatal(err)
	}
}

// testS3StaleUploads leaves multipart uploads behind, as a killed process
// would, and checks AbortStaleUploads aborts those under the prefix begun
// before the cut-off, and only those.
func testS3StaleUploads(t *testing.T, srv *s3test.Server, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	ctx := t.Context()
	tg := newTarget(t, cfg)
	c, ok := targets.As[targets.UploadCleaner](targets.NewRetry(targets.NewCounting(tg), targets.FastRetryOptions()))
	if !ok {
		t.Fatal("the target, under the retry and counting wrappers, is no UploadCleaner")
	}
	for _, key := range []string{"data/ab/killed-1", "data/cd/killed-2", "index/other"} {
		srv.BeginUpload(t, cfg.Bucket, key)
	}
	if n, err := c.AbortStaleUploads(ctx, "data/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("uploads begun just now, cut-off an hour ago: aborted %d, %v", n, err)
	}
	if n, err := c.AbortStaleUploads(ctx, "data/", time.Now().Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("aborted %d, %v; want the 2 under data/", n, err)
	}
	if keys := srv.Uploads(t, cfg.Bucket); len(keys) != 1 || keys[0] != "index/other" {
		t.Fatalf("uploads left: %v, want only index/other", keys)
	}
}

// testS3Requests checks that pages and parts are counted as requests.
func testS3Requests(t *testing.T, cfg S3Config, newTarget func(*testing.T, S3Config) targets.Target) {
	cfg.ListPageSize = 2
	c := targets.NewCounting(newTarget(t, cfg))
	ctx := t.Context()
	if _, err := c.Put(ctx, "big", randomBytes(31, 12<<20)); err != nil {
		t.Fatal(err)
	}
	if got := c.Snapshot().Ops[targets.OpPut]; got.Calls != 1 || got.Requests != 5 {
		t.Errorf("a 3-part upload: %+v, want 1 call and 5 requests (create, 3 parts, complete)", got)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := c.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := c.List(ctx, "", func(targets.ObjectInfo) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("List: %d objects, %v", n, err)
	}
	if got := c.Snapshot().Ops[targets.OpList]; got.Calls != 1 || got.Requests != 3 {
		t.Errorf("a listing of 5 keys by 2: %+v, want 1 call and 3 requests", got)
	}
}

// fastRetry is the fast retry preset, logging to the test's output.
func fastRetry(t *testing.T) targets.RetryOptions {
	o := targets.FastRetryOptions()
	o.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	return o
}
