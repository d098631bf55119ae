// Package s3 stores a repository in an S3 bucket through aws-sdk-go-v2:
// Amazon S3 with the standard credential chain and region, or any server
// at an explicit endpoint.
//
// The SDK's own retries are off: drctl's retry layer (targets.NewRetry)
// decides, once, for every target. Errors are classified here, at the
// boundary, onto the targets sentinels and targets.Transient.
package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"

	"github.com/drctl/drctl/targets"
)

// Defaults and limits of Options.
const (
	DefaultPartSize    = 16 << 20
	MinPartSize        = 5 << 20 // S3's minimum for all parts but the last
	DefaultConcurrency = 4
	// DefaultResponseTimeout bounds the wait for response headers once a
	// request is sent, so a hung server turns into a transient error
	// instead of a call that never returns.
	DefaultResponseTimeout = 2 * time.Minute
)

// Options configure a Target.
type Options struct {
	Bucket string
	// Prefix puts every key under Prefix + "/". Empty: the bucket's root.
	Prefix string

	// Endpoint is the base URL of an S3-compatible server
	// ("http://127.0.0.1:7070"). Empty means Amazon S3.
	Endpoint string
	// PathStyle addresses the bucket in the path instead of the host
	// name; most servers other than AWS need it.
	PathStyle bool
	// Region; empty takes the AWS environment's (AWS_REGION, the shared
	// config), or us-east-1 with an Endpoint.
	Region string
	// AccessKey and SecretKey, if set, are used as static credentials.
	// Otherwise the standard AWS chain applies (environment, shared files,
	// SSO, instance role).
	AccessKey    string
	SecretKey    string
	SessionToken string

	// PartSize is the size of multipart parts (default 16 MiB, at least
	// 5 MiB). Objects larger than MultipartThreshold (default PartSize)
	// are uploaded in parts, Concurrency (default 4) at a time.
	PartSize           int64
	MultipartThreshold int64
	Concurrency        int
	// ResponseTimeout: see DefaultResponseTimeout.
	ResponseTimeout time.Duration
	// ListPageSize is the number of keys per list request (max 1000).
	ListPageSize int

	// Transport, if set, carries the requests as is (tests put proxies
	// here); ResponseTimeout then does not apply.
	Transport http.RoundTripper
}

// Target is an S3 bucket (and prefix) reached with aws-sdk-go-v2.
type Target struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	name     string // for String and messages
	where    string // endpoint or "AWS S3 region X", for messages
	region   string
	opts     Options
	bucketOK atomic.Bool // seen to exist; see Stat
}

var _ targets.Target = (*Target)(nil)

// New makes a Target. It sends no request; CheckBucket does.
func New(ctx context.Context, opts Options) (*Target, error) {
	if opts.Bucket == "" {
		return nil, errors.New("s3 target: no bucket")
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3 target: part size %d is below the S3 minimum of %d", opts.PartSize, MinPartSize)
	}
	if opts.MultipartThreshold <= 0 {
		opts.MultipartThreshold = opts.PartSize
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
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
	cfg, err := awsConfig(ctx, opts)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 1
		// Integrity is checked above (every blob carries a MAC); response
		// checksums would only add "no supported checksum" log noise.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		o.Logger = logging.Nop{}
	})
	t := &Target{client: client, bucket: opts.Bucket, prefix: prefix, opts: opts, region: cfg.Region}
	if opts.Endpoint != "" {
		t.where = opts.Endpoint
		t.name = "s3:" + strings.TrimRight(opts.Endpoint, "/") + "/" + opts.Bucket
	} else {
		t.where = "AWS S3 region " + cfg.Region
		t.name = "s3:aws/" + opts.Bucket
	}
	if prefix != "" {
		t.name += "/" + strings.TrimSuffix(prefix, "/")
	}
	return t, nil
}

// awsConfig builds the SDK configuration. With static keys it reads
// nothing from the environment, so tests are hermetic; without, it loads
// the standard chain (the one documented global read of this package).
func awsConfig(ctx context.Context, opts Options) (aws.Config, error) {
	base := opts.Transport
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		tr.ResponseHeaderTimeout = opts.ResponseTimeout
		base = tr
	}
	hc := &http.Client{Transport: targets.CountingTransport(base)}
	noRetry := func() aws.Retryer { return aws.NopRetryer{} }
	if opts.AccessKey != "" {
		region := opts.Region
		if region == "" {
			region = "us-east-1"
		}
		return aws.Config{
			Region:      region,
			Credentials: credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, opts.SessionToken),
			HTTPClient:  hc,
			Retryer:     noRetry,
			Logger:      logging.Nop{},
		}, nil
	}
	load := []func(*config.LoadOptions) error{
		config.WithHTTPClient(hc),
		config.WithRetryer(noRetry),
		config.WithLogger(logging.Nop{}),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3 target: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		if opts.Endpoint == "" {
			return aws.Config{}, errors.New("s3 target: no AWS region: set AWS_REGION or configure a region")
		}
		cfg.Region = "us-east-1"
	}
	return cfg, nil
}

// String names the target, e.g. "s3:aws/bucket/prefix".
func (t *Target) String() string { return t.name }

// CheckBucket verifies that the bucket exists and the credentials may use
// it. "drctl init" calls it so that a typo in the bucket name is reported
// as such, not as a failed write.
func (t *Target) CheckBucket(ctx context.Context) error {
	_, err := t.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(t.bucket)})
	if err == nil {
		t.bucketOK.Store(true)
		return nil
	}
	err = t.classify(ctx, err, nil)
	if errors.Is(err, targets.ErrNotFound) {
		err = t.noBucket()
	}
	return fmt.Errorf("check bucket %s at %s: %w", t.bucket, t.where, err)
}

func (t *Target) noBucket() error {
	return fmt.Errorf("%w: bucket %s does not exist at %s: create it first", targets.ErrNoBucket, t.bucket, t.where)
}

func (t *Target) key(key string) string { return t.prefix + key }

// begin checks ctx and key before a call.
func (t *Target) begin(ctx context.Context, op targets.Op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", op, key, t.name, err)
	}
	if err := targets.ValidateKey(key); err != nil {
		return fmt.Errorf("%s in %s: %w", op, t.name, err)
	}
	return nil
}

// fail wraps a classified error with the operation, key and target.
func (t *Target) fail(op targets.Op, key string, err error) error {
	return fmt.Errorf("%s %q in %s: %w", op, key, t.name, err)
}

func trimETag(s *string) string { return strings.Trim(aws.ToString(s), `"`) }

func quoteETag(s string) *string { return aws.String(`"` + strings.Trim(s, `"`) + `"`) }
