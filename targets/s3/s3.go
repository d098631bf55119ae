// Package s3 stores a repository in an S3 bucket through aws-sdk-go-v2:
// Amazon S3 with the standard credential chain and region, or any server
// at an explicit endpoint.
//
// The SDK's own retries are off: drctl's retry layer (targets.NewRetry)
// decides, once, for every target. Errors are classified here, at the
// boundary, onto the targets sentinels and targets.Transient, by the rules
// shared with s3compat.
package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/internal/s3util"
)

// Defaults and limits of Options.
const (
	DefaultPartSize    = s3util.DefaultPartSize
	MinPartSize        = s3util.MinPartSize // S3's minimum for all parts but the last
	DefaultConcurrency = s3util.DefaultConcurrency
	// DefaultResponseTimeout bounds the wait for response headers once a
	// request is sent, so a hung server turns into a transient error
	// instead of a call that never returns.
	DefaultResponseTimeout = s3util.DefaultResponseTimeout
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

	// ObjectLock, if set, writes the keys it picks with Object Lock
	// retention. The bucket must have Object Lock enabled: see
	// CheckObjectLock.
	ObjectLock *targets.ObjectLock

	// Transport, if set, carries the requests as is (tests put proxies
	// here); ResponseTimeout then does not apply.
	Transport http.RoundTripper
}

// Target is an S3 bucket (and prefix) reached with aws-sdk-go-v2.
type Target struct {
	client *s3.Client
	b      *s3util.Bucket
	errs   s3util.Classifier
	region string
	lock   *targets.ObjectLock // nil: no retention
}

var _ targets.Target = (*Target)(nil)

// New makes a Target. It sends no request; CheckBucket does.
func New(ctx context.Context, opts Options) (*Target, error) {
	c, err := s3util.Config{
		Bucket: opts.Bucket, Prefix: opts.Prefix,
		PartSize: opts.PartSize, MultipartThreshold: opts.MultipartThreshold, Concurrency: opts.Concurrency,
		ResponseTimeout: opts.ResponseTimeout, ListPageSize: opts.ListPageSize,
	}.Check()
	if err != nil {
		return nil, err
	}
	var lock *targets.ObjectLock
	if opts.ObjectLock != nil {
		if err := opts.ObjectLock.Check(); err != nil {
			return nil, fmt.Errorf("s3 target: %w", err)
		}
		l := *opts.ObjectLock // the caller's may change later; a target's does not
		lock = &l
	}
	cfg, err := awsConfig(ctx, opts, s3util.Transport(opts.Transport, c.ResponseTimeout))
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
	t := &Target{client: client, region: cfg.Region, lock: lock}
	if opts.Endpoint != "" {
		t.b = s3util.NewBucket(c, strings.TrimRight(opts.Endpoint, "/"), opts.Endpoint)
	} else {
		t.b = s3util.NewBucket(c, "aws", "AWS S3 region "+cfg.Region)
	}
	t.errs = s3util.Classifier{NoBucket: t.b.NoBucket, WrongRegion: t.wrongRegion, SendError: sendError, NeedStatus: true}
	return t, nil
}

// awsConfig builds the SDK configuration. With static keys it reads
// nothing from the environment, so tests are hermetic; without, it loads
// the standard chain (the one documented global read of this package).
func awsConfig(ctx context.Context, opts Options, tr http.RoundTripper) (aws.Config, error) {
	hc := &http.Client{Transport: tr}
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
func (t *Target) String() string { return t.b.String() }

// CheckBucket verifies that the bucket exists and the credentials may use
// it. "drctl init" calls it so that a typo in the bucket name is reported
// as such, not as a failed write.
func (t *Target) CheckBucket(ctx context.Context) error {
	_, err := t.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(t.b.Bucket)})
	if err == nil {
		t.b.Seen()
		return nil
	}
	err = t.classify(ctx, err, nil)
	if errors.Is(err, targets.ErrNotFound) {
		err = t.b.NoBucket()
	}
	return t.b.CheckFailed(err)
}

// CheckObjectLock verifies that the bucket has Object Lock enabled, without
// which S3 refuses every write that asks for retention. Opening a target
// with Options.ObjectLock calls it, so the mistake shows at once and
// names its fix.
func (t *Target) CheckObjectLock(ctx context.Context) error {
	out, err := t.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(t.b.Bucket)})
	if err != nil {
		return t.b.LockChecked(t.classify(ctx, err, nil), false)
	}
	c := out.ObjectLockConfiguration
	return t.b.LockChecked(nil, c != nil && c.ObjectLockEnabled == types.ObjectLockEnabledEnabled)
}

func trimETag(s *string) string { return strings.Trim(aws.ToString(s), `"`) }

func quoteETag(s string) *string { return aws.String(`"` + strings.Trim(s, `"`) + `"`) }
