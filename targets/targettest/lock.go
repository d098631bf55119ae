package targettest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
)

// RunObjectLock checks writes with Object Lock retention against the
// server: the bucket check, which keys get retention and with which
// headers, and what a retained object withstands, on a versioned bucket
// (as on Amazon S3) and on an unversioned one. newTarget returns the bare
// target for cfg under prefix; the suite looks behind it with srv's own
// client, so it needs the prefix too.
func RunObjectLock(t *testing.T, srv *s3test.Server, prefix string, newTarget func(t *testing.T, cfg S3Config) targets.Target) {
	lk := lockKit{srv: srv, prefix: prefix, newTarget: newTarget}
	t.Run("Check", lk.testCheck)
	t.Run("Retention", lk.testRetention)
	t.Run("Versioned", lk.testVersioned)
	t.Run("Unversioned", lk.testUnversioned)
}

type lockChecker interface {
	CheckObjectLock(ctx context.Context) error
}

type lockKit struct {
	srv       *s3test.Server
	prefix    string
	newTarget func(t *testing.T, cfg S3Config) targets.Target
}

// target is a target with lock on bucket of srv.
func (lk lockKit) target(t *testing.T, srv *s3test.Server, bucket string, lock *targets.ObjectLock, tr http.RoundTripper) targets.Target {
	t.Helper()
	return lk.newTarget(t, S3Config{
		Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		ObjectLock: lock, Transport: tr,
	})
}

// key is the object key of a target's key.
func (lk lockKit) key(k string) *string {
	if lk.prefix == "" {
		return aws.String(k)
	}
	return aws.String(lk.prefix + "/" + k)
}

func governance(days int) *targets.ObjectLock {
	return &targets.ObjectLock{Mode: targets.LockGovernance, Days: days}
}

func (lk lockKit) testCheck(t *testing.T) {
	ctx := t.Context()
	plain := lk.srv.NewBucket(t)
	err := lk.target(t, lk.srv, plain, governance(1), nil).(lockChecker).CheckObjectLock(ctx)
	mustBe(t, "CheckObjectLock of a bucket without Object Lock", err, targets.ErrNoObjectLock)
	for _, want := range []string{"bucket " + plain + " at " + lk.srv.Endpoint, "does not have Object Lock enabled", "create the bucket with Object Lock enabled", "turn it on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckObjectLock: %q does not say %q", err, want)
		}
	}
	if targets.IsTransient(err) {
		t.Errorf("CheckObjectLock: %v is transient", err)
	}
	err = lk.target(t, lk.srv, "no-such-bucket", governance(1), nil).(lockChecker).CheckObjectLock(ctx)
	mustBe(t, "CheckObjectLock of a missing bucket", err, targets.ErrNoBucket)
	if err := lk.target(t, lk.srv, lk.srv.NewLockedBucket(t), governance(1), nil).(lockChecker).CheckObjectLock(ctx); err != nil {
		t.Errorf("CheckObjectLock of a locked bucket: %v", err)
	}
}

// testRetention writes every kind of repository object, small and
// multipart, and checks which got retention and what was sent.
func (lk lockKit) testRetention(t *testing.T) {
	ctx := t.Context()
	bucket := lk.srv.NewLockedBucket(t)
	rec := &recorder{next: http.DefaultTransport}
	tg := lk.target(t, lk.srv, bucket, governance(2), rec)
	immutable := map[string][]byte{
		"config":                        []byte("c"),
		"keys/0123":                     []byte("k"),
		"data/ab/ab01":                  randomBytes(40, 1000),
		"data/cd/cd01":                  randomBytes(41, 6<<20), // two parts
		"index/w-20260301T120000Z-0001": []byte("i"),
		"snapshots/web1/20260301T120000.000000000Z-0001": []byte("s"),
	}
	mutable := []string{"fence/web1", "heartbeats/site-a", "leases/w-0001", "condemned/x", "drills/x", "failovers/web1", "other"}
	before := time.Now()
	for k, v := range immutable {
		write := tg.Put
		if !strings.HasPrefix(k, "data/") {
			write = tg.PutIfAbsent
		}
		if _, err := write(ctx, k, v); err != nil {
			t.Fatalf("write %s: %v", k, err)
		}
	}
	for _, k := range mutable {
		if _, err := tg.PutIfAbsent(ctx, k, []byte(k)); err != nil {
			t.Fatalf("PutIfAbsent(%s): %v", k, err)
		}
	}
	after := time.Now()

	c := lk.srv.Client()
	for k := range immutable {
		mode, until, err := retentionOf(ctx, c, bucket, lk.key(k), nil)
		if err != nil || mode != types.ObjectLockRetentionModeGovernance {
			t.Errorf("retention of %s: %q, %v; want GOVERNANCE", k, mode, err)
			continue
		}
		if lo, hi := before.Add(48*time.Hour).Truncate(time.Second), after.Add(48*time.Hour+time.Second); until.Before(lo) || until.After(hi) {
			t.Errorf("%s retained until %v, want 2 days after the write (%v…%v)", k, until, lo, hi)
		}
	}
	for _, k := range mutable {
		if mode, until, err := retentionOf(ctx, c, bucket, lk.key(k), nil); err == nil && mode != "" {
			t.Errorf("mutable %s retained: %s until %v", k, mode, until)
		}
	}

	// S3 requires Content-MD5 or a checksum with every write of an object
	// with retention; retention goes with the PUT, or with the creation
	// of a multipart upload.
	for _, r := range rec.all() {
		key, _ := strings.CutPrefix(r.path, "/"+bucket+"/")
		key = strings.TrimPrefix(key, lk.prefix+"/")
		_, wantLock := immutable[key]
		create := r.method == http.MethodPost && r.query.Has("uploads")
		part := r.method == http.MethodPut && r.query.Has("partNumber")
		lockHdr := r.header.Get("X-Amz-Object-Lock-Mode") != "" || r.header.Get("X-Amz-Object-Lock-Retain-Until-Date") != ""
		switch {
		case r.method == http.MethodPut && !hasChecksum(r.header):
			t.Errorf("%s %s%s carries neither Content-MD5 nor a checksum: %v", r.method, r.path, r.rawQuery, r.header)
		case (create || r.method == http.MethodPut && !part) && wantLock:
			if r.header.Get("X-Amz-Object-Lock-Mode") != "GOVERNANCE" || r.header.Get("X-Amz-Object-Lock-Retain-Until-Date") == "" {
				t.Errorf("%s %s%s: no retention headers: %v", r.method, r.path, r.rawQuery, r.header)
			}
		case lockHdr && (!wantLock || part || r.method == http.MethodPost && !create):
			t.Errorf("%s %s%s carries retention headers: %v", r.method, r.path, r.rawQuery, r.header)
		}
	}
	if n := rec.count(func(r request) bool { return r.method == http.MethodPost && r.query.Has("uploads") }); n != 1 {
		t.Errorf("%d multipart uploads created, want 1", n)
	}
}

// testVersioned: on a versioned bucket (Amazon S3 has no other kind with
// Object Lock) a retained version cannot be deleted; drctl's overwrite and
// delete add a new version or a delete marker above it.
func (lk lockKit) testVersioned(t *testing.T) {
	ctx := t.Context()
	bucket := lk.srv.NewLockedBucket(t)
	tg := lk.target(t, lk.srv, bucket, governance(1), nil)
	c := lk.srv.Client()
	const pack = "data/ab/ab01"
	v1, v2 := randomBytes(50, 100), randomBytes(51, 100)
	put(t, tg, pack, v1)
	locked := lk.versions(t, bucket, pack)
	if len(locked) != 1 {
		t.Fatalf("%d versions of %s, want 1", len(locked), pack)
	}
	refused := func(what string) {
		t.Helper()
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: lk.key(pack), VersionId: locked[0].VersionId})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" || !strings.Contains(ae.ErrorMessage(), "object lock") {
			t.Fatalf("%s: deleting the retained version: %v, want AccessDenied because of object lock", what, err)
		}
	}
	refused("after the write")

	put(t, tg, pack, v2) // a new version: the retained one stays
	mustHold(t, tg, pack, v2)
	if err := tg.Delete(ctx, pack); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustNotFound(t, tg, pack)
	if l := listAll(t, tg, "data/"); len(l) != 0 {
		t.Fatalf("List after Delete: %+v", l)
	}
	refused("after an overwrite and a delete")
	if mode, _, err := retentionOf(ctx, c, bucket, lk.key(pack), locked[0].VersionId); err != nil || mode != types.ObjectLockRetentionModeGovernance {
		t.Fatalf("retention of the hidden version: %q, %v", mode, err)
	}
	if n := len(lk.versions(t, bucket, pack)); n != 2 {
		t.Errorf("%d versions of %s after an overwrite and a delete, want both writes", n, pack)
	}

	// A mutable key is compare-and-swapped as usual, and its old
	// versions can be removed.
	const fence = "fence/web1"
	i1, err := tg.PutIfAbsent(ctx, fence, []byte("epoch 1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.PutIfMatch(ctx, fence, []byte("epoch 2"), i1.ETag); err != nil {
		t.Fatalf("PutIfMatch of %s: %v", fence, err)
	}
	_, err = tg.PutIfMatch(ctx, fence, []byte("epoch 2b"), i1.ETag)
	mustBe(t, "PutIfMatch with a stale tag", err, targets.ErrPrecondition)
	mustHold(t, tg, fence, []byte("epoch 2"))
	for _, v := range lk.versions(t, bucket, fence) {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: lk.key(fence), VersionId: v.VersionId}); err != nil {
			t.Errorf("deleting a version of %s: %v", fence, err)
		}
	}
	mustNotFound(t, tg, fence)
}

// testUnversioned: on a bucket with Object Lock but no versioning (a
// versitygw without a versioning directory; Amazon S3 has none) a
// retained object cannot be overwritten or deleted at all, and the target
// says so with ErrLocked, not ErrAccessDenied.
func (lk lockKit) testUnversioned(t *testing.T) {
	ctx := t.Context()
	srv := s3test.StartWith(t, s3test.Options{NoVersioning: true})
	tg := lk.target(t, srv, srv.NewLockedBucket(t), governance(1), nil)
	const pack = "data/ab/ab01"
	v1 := randomBytes(60, 100)
	put(t, tg, pack, v1)
	locked := func(what string, err error) {
		t.Helper()
		mustBe(t, what, err, targets.ErrLocked)
		if errors.Is(err, targets.ErrAccessDenied) || targets.IsTransient(err) {
			t.Errorf("%s: %v is also access denied or transient", what, err)
		}
		if !strings.Contains(err.Error(), pack) {
			t.Errorf("%s: %q does not name the key", what, err)
		}
	}
	_, err := tg.Put(ctx, pack, randomBytes(61, 100))
	locked("Put over a retained object", err)
	locked("Delete of a retained object", tg.Delete(ctx, pack))
	mustHold(t, tg, pack, v1)

	_, err = tg.PutIfAbsent(ctx, "config", []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	// The server refuses because of the lock before it looks at the
	// condition; the key is taken all the same.
	_, err = tg.PutIfAbsent(ctx, "config", []byte("c2"))
	mustBe(t, "PutIfAbsent over a retained object", err, targets.ErrExists)
	mustHold(t, tg, "config", []byte("c"))

	const fence = "fence/web1"
	i1, err := tg.PutIfAbsent(ctx, fence, []byte("epoch 1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.PutIfMatch(ctx, fence, []byte("epoch 2"), i1.ETag); err != nil {
		t.Fatalf("PutIfMatch of %s: %v", fence, err)
	}
	if err := tg.Delete(ctx, fence); err != nil {
		t.Fatalf("Delete of %s: %v", fence, err)
	}
	mustNotFound(t, tg, fence)
}

// versions lists the versions (not delete markers) of key.
func (lk lockKit) versions(t *testing.T, bucket, key string) []types.ObjectVersion {
	t.Helper()
	out, err := lk.srv.Client().ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(bucket), Prefix: lk.key(key)})
	if err != nil {
		t.Fatal(err)
	}
	var vs []types.ObjectVersion
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == aws.ToString(lk.key(key)) {
			vs = append(vs, v)
		}
	}
	return vs
}

// retentionOf is the retention of an object (version); an object without
// one is an error or an empty mode, depending on the server.
func retentionOf(ctx context.Context, c *s3.Client, bucket string, key, version *string) (types.ObjectLockRetentionMode, time.Time, error) {
	out, err := c.GetObjectRetention(ctx, &s3.GetObjectRetentionInput{Bucket: aws.String(bucket), Key: key, VersionId: version})
	if err != nil {
		return "", time.Time{}, err
	}
	if out.Retention == nil {
		return "", time.Time{}, nil
	}
	return out.Retention.Mode, aws.ToTime(out.Retention.RetainUntilDate), nil
}

// hasChecksum reports whether a write carries what S3 accepts as its
// integrity check with retention.
func hasChecksum(h http.Header) bool {
	if h.Get("Content-Md5") != "" || strings.Contains(strings.ToLower(h.Get("X-Amz-Trailer")), "x-amz-checksum-") {
		return true
	}
	for name := range h {
		if strings.HasPrefix(strings.ToLower(name), "x-amz-checksum-") && !strings.EqualFold(name, "X-Amz-Checksum-Algorithm") {
			return true
		}
	}
	return false
}

// request is what recorder keeps of one request.
type request struct {
	method, path, rawQuery string
	query                  url.Values
	header                 http.Header
}

// recorder is a transport that records the requests it carries.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, request{
		method: req.Method, path: req.URL.Path, rawQuery: "?" + req.URL.RawQuery,
		query: req.URL.Query(), header: req.Header.Clone(),
	})
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) all() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func (r *recorder) count(match func(request) bool) int {
	n := 0
	for _, req := range r.all() {
		if match(req) {
			n++
		}
	}
	return n
}
