// Package open turns a repository URL into a ready Target.
//
// It is a package of its own, not part of targets, because it links every
// implementation (and the S3 SDKs), which themselves import targets. URL
// parsing alone is targets.ParseURL.
//
// Composition: Open returns Retry(backend) unless Options.NoRetry. A
// caller that wants statistics wraps the result once more,
// targets.NewCounting(t), so that one logical call counts once however
// often it was retried, while the S3 backends still report every HTTP
// request they send (pages, parts, retries) through the context.
package open

import (
	"context"
	"fmt"
	"net/http"

	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
	"github.com/drctl/drctl/targets/s3"
	"github.com/drctl/drctl/targets/s3compat"
)

// Options configure Open. Open reads no environment variables itself
// except through the AWS SDK's standard chain for s3:aws URLs; the caller
// fills the keys (e.g. from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
type Options struct {
	// AccessKey and SecretKey authenticate to an S3-compatible endpoint
	// (required there). For s3:aws they override the standard chain.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Region for S3; empty: the AWS environment's for s3:aws, us-east-1
	// for endpoints.
	Region string

	// Create is for "drctl init": a local directory is created, an S3
	// bucket is checked to exist (buckets are not created: their region,
	// object lock and lifecycle are the operator's choice).
	Create bool

	// NoRetry returns the bare backend. Retry tunes the retry wrapper
	// (zero: targets.DefaultRetryOptions).
	NoRetry bool
	Retry   targets.RetryOptions

	// ObjectLock, if set, writes new objects with S3 Object Lock
	// retention (see targets.ObjectLock; its Keys default to
	// targets.ImmutableRepoKey). Open then checks that the bucket has
	// Object Lock enabled, and refuses a local directory.
	ObjectLock *targets.ObjectLock

	// PartSize of S3 multipart uploads; zero: 16 MiB.
	PartSize int64
	// Transport, if set, carries S3 requests (tests put proxies here).
	Transport http.RoundTripper
}

// Open parses rawURL (see targets.URLForms) and returns its target.
func Open(ctx context.Context, rawURL string, opts Options) (targets.Target, error) {
	u, err := targets.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	t, err := backend(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	if opts.NoRetry {
		return t, nil
	}
	return targets.NewRetry(t, opts.Retry), nil
}

// bucketChecker is implemented by both S3 backends.
type bucketChecker interface {
	CheckBucket(ctx context.Context) error
	CheckObjectLock(ctx context.Context) error
}

func backend(ctx context.Context, u targets.URL, opts Options) (targets.Target, error) {
	var t targets.Target
	var err error
	switch u.Kind {
	case targets.KindLocal:
		if opts.ObjectLock != nil {
			return nil, fmt.Errorf("open %s: %w: object lock needs an S3 bucket with Object Lock enabled; a local directory cannot protect its files from deletion",
				u, targets.ErrNoObjectLock)
		}
		if opts.Create {
			return local.Create(u.Path)
		}
		return local.New(u.Path)
	case targets.KindS3:
		t, err = s3.New(ctx, s3.Options{
			Bucket: u.Bucket, Prefix: u.Prefix, Region: opts.Region,
			AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, SessionToken: opts.SessionToken,
			PartSize: opts.PartSize, Transport: opts.Transport, ObjectLock: opts.ObjectLock,
		})
	case targets.KindS3Compat:
		if opts.AccessKey == "" || opts.SecretKey == "" {
			return nil, fmt.Errorf("open %s: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", u)
		}
		t, err = s3compat.New(s3compat.Options{
			Endpoint: u.Endpoint, Bucket: u.Bucket, Prefix: u.Prefix, Region: opts.Region,
			AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, SessionToken: opts.SessionToken,
			PartSize: opts.PartSize, Transport: opts.Transport, ObjectLock: opts.ObjectLock,
		})
	default:
		return nil, fmt.Errorf("open %s: unknown kind %q", u, u.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", u, err)
	}
	if opts.Create {
		if err := t.(bucketChecker).CheckBucket(ctx); err != nil {
			return nil, fmt.Errorf("open %s: %w", u, err)
		}
	}
	if opts.ObjectLock != nil {
		// Every write with retention would fail on such a bucket; better
		// one clear error now than a failed replication later.
		if err := t.(bucketChecker).CheckObjectLock(ctx); err != nil {
			return nil, fmt.Errorf("open %s: %w", u, err)
		}
	}
	return t, nil
}
