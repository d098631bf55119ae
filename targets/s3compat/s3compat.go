// Package s3compat stores a repository on an S3-compatible server
// (MinIO, Ceph RGW, Garage, versitygw, hosting companies' object storage)
// through minio-go, which copes with their differences better than the AWS
// SDK (no trailing checksums unless asked, path-style addressing).
//
// minio-go's own retries are off (Options.MaxRetries = 1, a per-client
// setting; the package-global minio.MaxRetry is left alone): drctl's retry
// layer decides, once, for every target. Trailing headers stay off: some
// servers (versitygw 1.8) reject minio-go's trailing checksums over HTTP.
package s3compat

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util"
)

// Defaults and limits of Options.
const (
	DefaultPartSize = s3util.DefaultPartSize
	MinPartSize     = s3util.MinPartSize // S3's minimum for all parts but the last
	// DefaultResponseTimeout bounds the wait for response headers once a
	// request is sent, so a hung server turns into a transient error.
	DefaultResponseTimeout = s3util.DefaultResponseTimeout
)

// Options configure a Target.
type Options struct {
	// Endpoint is the server's base URL, http[s]://host[:port].
	Endpoint string
	Bucket   string
	// Prefix puts every key under Prefix + "/". Empty: the bucket's root.
	Prefix string
	// Region sent in signatures; default us-east-1. Setting it also spares
	// minio-go a bucket-location request.
	Region       string
	AccessKey    string
	SecretKey    string
	SessionToken string
	// PartSize: objects larger than this are uploaded in parts of this
	// size (default 16 MiB, at least 5 MiB), Concurrency (default 4) at a
	// time.
	PartSize    int64
	Concurrency int
	// ResponseTimeout: see DefaultResponseTimeout.
	ResponseTimeout time.Duration
	// ListPageSize is the number of keys per list request (max 1000).
	ListPageSize int
	// ObjectLock, if set, writes the keys it picks with Object Lock
	// retention. The bucket must have Object Lock enabled: see
	// CheckObjectLock.
	ObjectLock *targets.ObjectLock
	// Transport, if set, carries the requests as is (tests put proxies
	// here); ResponseTimeout then does not apply.
	Transport http.RoundTripper
}

// Target is a bucket (and prefix) on an S3-compatible server.
type Target struct {
	client *minio.Client
	core   minio.Core
	b      *s3util.Bucket
	errs   s3util.Classifier
	lock   *targets.ObjectLock // nil: no retention
}

var _ targets.Target = (*Target)(nil)

// New makes a Target. It sends no request; CheckBucket does.
func New(opts Options) (*Target, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3 target: endpoint %q is not http[s]://host[:port]", opts.Endpoint)
	}
	c, err := s3util.Config{
		Bucket: opts.Bucket, Prefix: opts.Prefix, PartSize: opts.PartSize, Concurrency: opts.Concurrency,
		ResponseTimeout: opts.ResponseTimeout, ListPageSize: opts.ListPageSize,
	}.Check()
	if err != nil {
		return nil, err
	}
	var lock *targets.ObjectLock
	if opts.ObjectLock != nil {
		if err := opts.ObjectLock.Check(); err != nil {
			return nil, fmt.Errorf("s3 target %s: %w", opts.Endpoint, err)
		}
		l := *opts.ObjectLock // the caller's may change later; a target's does not
		lock = &l
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken),
		Secure:       u.Scheme == "https",
		Region:       opts.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    s3util.Transport(opts.Transport, c.ResponseTimeout),
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 target %s: %w", opts.Endpoint, err)
	}
	endpoint := u.Scheme + "://" + u.Host
	t := &Target{client: client, core: minio.Core{Client: client}, b: s3util.NewBucket(c, endpoint, endpoint), lock: lock}
	t.errs = s3util.Classifier{NoBucket: t.b.NoBucket}
	return t, nil
}

// String names the target, e.g. "s3:https://host/bucket/prefix".
func (t *Target) String() string { return t.b.String() }

// CheckBucket verifies that the bucket exists and the credentials may use
// it; "drctl init" calls it so a wrong bucket name is reported as such.
func (t *Target) CheckBucket(ctx context.Context) error {
	ok, err := t.client.BucketExists(ctx, t.b.Bucket)
	if err != nil {
		return t.b.CheckFailed(t.classify(ctx, err, nil))
	}
	if !ok {
		return t.b.CheckFailed(t.b.NoBucket())
	}
	t.b.Seen()
	return nil
}

// CheckObjectLock verifies that the bucket has Object Lock enabled, without
// which S3 refuses every write that asks for retention. Opening a target
// with Options.ObjectLock calls it, so the mistake shows at once and
// names its fix.
func (t *Target) CheckObjectLock(ctx context.Context) error {
	enabled, _, _, _, err := t.client.GetObjectLockConfig(ctx, t.b.Bucket)
	if err != nil {
		return t.b.LockChecked(t.classify(ctx, err, nil), false)
	}
	return t.b.LockChecked(nil, enabled == "Enabled")
}
