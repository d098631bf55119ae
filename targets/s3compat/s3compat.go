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
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/drctl/drctl/targets"
)

// Defaults and limits of Options.
const (
	DefaultPartSize = 16 << 20
	MinPartSize     = 5 << 20 // S3's minimum for all parts but the last
	// DefaultResponseTimeout bounds the wait for response headers once a
	// request is sent, so a hung server turns into a transient error.
	DefaultResponseTimeout = 2 * time.Minute
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
	// Transport, if set, carries the requests as is (tests put proxies
	// here); ResponseTimeout then does not apply.
	Transport http.RoundTripper
}

// Target is a bucket (and prefix) on an S3-compatible server.
type Target struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	prefix   string // "" or ending in "/"
	name     string
	endpoint string
	opts     Options
	bucketOK atomic.Bool
}

var _ targets.Target = (*Target)(nil)

// New makes a Target. It sends no request; CheckBucket does.
func New(opts Options) (*Target, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3 target: endpoint %q is not http[s]://host[:port]", opts.Endpoint)
	}
	if opts.Bucket == "" {
		return nil, errors.New("s3 target: no bucket")
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3 target: part size %d is below the S3 minimum of %d", opts.PartSize, MinPartSize)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.ResponseTimeout <= 0 {
		opts.ResponseTimeout = DefaultResponseTimeout
	}
	if opts.ListPageSize <= 0 || opts.ListPageSize > 1000 {
		opts.ListPageSize = 1000
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		if err := targets.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("s3 target: bad prefix: %w", err)
		}
		prefix += "/"
	}
	base := opts.Transport
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		tr.ResponseHeaderTimeout = opts.ResponseTimeout
		base = tr
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken),
		Secure:       u.Scheme == "https",
		Region:       opts.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    targets.CountingTransport(base),
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 target %s: %w", opts.Endpoint, err)
	}
	endpoint := u.Scheme + "://" + u.Host
	t := &Target{
		client: client, core: minio.Core{Client: client},
		bucket: opts.Bucket, prefix: prefix, endpoint: endpoint, opts: opts,
		name: "s3:" + endpoint + "/" + opts.Bucket,
	}
	if prefix != "" {
		t.name += "/" + strings.TrimSuffix(prefix, "/")
	}
	return t, nil
}

// String names the target, e.g. "s3:https://host/bucket/prefix".
func (t *Target) String() string { return t.name }

// CheckBucket verifies that the bucket exists and the credentials may use
// it; "drctl init" calls it so a wrong bucket name is reported as such.
func (t *Target) CheckBucket(ctx context.Context) error {
	ok, err := t.client.BucketExists(ctx, t.bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s at %s: %w", t.bucket, t.endpoint, t.classify(ctx, err, nil))
	}
	if !ok {
		return fmt.Errorf("check bucket %s at %s: %w", t.bucket, t.endpoint, t.noBucket())
	}
	t.bucketOK.Store(true)
	return nil
}

func (t *Target) noBucket() error {
	return fmt.Errorf("%w: bucket %s does not exist at %s: create it first", targets.ErrNoBucket, t.bucket, t.endpoint)
}

func (t *Target) key(key string) string { return t.prefix + key }

func (t *Target) begin(ctx context.Context, op targets.Op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", op, key, t.name, err)
	}
	if err := targets.ValidateKey(key); err != nil {
		return fmt.Errorf("%s in %s: %w", op, t.name, err)
	}
	return nil
}

func (t *Target) fail(op targets.Op, key string, err error) error {
	return fmt.Errorf("%s %q in %s: %w", op, key, t.name, err)
}
