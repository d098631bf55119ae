// Package s3util is what the two S3 targets, targets/s3 (aws-sdk-go-v2)
// and targets/s3compat (minio-go), have in common apart from their client
// library: configuration defaults, the mapping of keys into a bucket under
// a prefix, the classification of errors, and the planning of multipart
// uploads. Both must behave alike, so that a repository moves between them
// without surprise; keeping that logic here keeps them from drifting apart.
package s3util

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/drctl/drctl/targets"
)

// Defaults and limits of Config.
const (
	DefaultPartSize    = 16 << 20
	MinPartSize        = 5 << 20 // S3's minimum for all parts but the last
	DefaultConcurrency = 4
	// DefaultResponseTimeout bounds the wait for response headers once a
	// request is sent, so a hung server turns into a transient error
	// instead of a call that never returns.
	DefaultResponseTimeout = 2 * time.Minute
	// MaxListPageSize is S3's limit of keys per list request.
	MaxListPageSize = 1000
)

// Config is the configuration both targets take, whatever the library.
type Config struct {
	Bucket string
	// Prefix, once checked, is "" or ends in "/".
	Prefix string
	// PartSize is the size of multipart parts; objects larger than
	// MultipartThreshold are uploaded in parts, Concurrency at a time.
	PartSize           int64
	MultipartThreshold int64
	Concurrency        int
	ResponseTimeout    time.Duration
	ListPageSize       int
}

// Check validates c and fills in the defaults of its zero fields.
func (c Config) Check() (Config, error) {
	if c.Bucket == "" {
		return Config{}, errors.New("s3 target: no bucket")
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize {
		return Config{}, fmt.Errorf("s3 target: part size %d is below the S3 minimum of %d", c.PartSize, MinPartSize)
	}
	if c.MultipartThreshold <= 0 {
		c.MultipartThreshold = c.PartSize
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.ListPageSize <= 0 || c.ListPageSize > MaxListPageSize {
		c.ListPageSize = MaxListPageSize
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	if c.Prefix != "" {
		if err := targets.ValidateKey(c.Prefix); err != nil {
			return Config{}, fmt.Errorf("s3 target: bad prefix: %w", err)
		}
		c.Prefix += "/"
	}
	return c, nil
}

// Transport is the HTTP transport of a target: custom as is (tests put
// proxies there), or else a pooled one that gives up on a server whose
// answer does not start within timeout. Either way its requests are
// counted.
func Transport(custom http.RoundTripper, timeout time.Duration) http.RoundTripper {
	if custom == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		tr.ResponseHeaderTimeout = timeout
		custom = tr
	}
	return targets.CountingTransport(custom)
}

// Bucket is a checked Config as a target uses it: keys under the prefix,
// calls checked and their errors named alike.
type Bucket struct {
	Config
	name  string      // the target's String
	where string      // the server, for messages
	seen  atomic.Bool // the bucket was seen to exist; see StatMissing
}

// NewBucket returns the bucket of c, a checked Config, on the server
// called root in the target's name ("s3:root/bucket/prefix") and where in
// messages.
func NewBucket(c Config, root, where string) *Bucket {
	b := &Bucket{Config: c, name: "s3:" + root + "/" + c.Bucket, where: where}
	if c.Prefix != "" {
		b.name += "/" + strings.TrimSuffix(c.Prefix, "/")
	}
	return b
}

func (b *Bucket) String() string { return b.name }

// Key is the object key of a target's key.
func (b *Bucket) Key(key string) string { return b.Prefix + key }

// Unkey is the target's key of a listed object key; ok is false for an
// object outside the prefix.
func (b *Bucket) Unkey(key string) (k string, ok bool) { return strings.CutPrefix(key, b.Prefix) }

// Seen records that the bucket answered, so a 404 is a missing key.
func (b *Bucket) Seen() { b.seen.Store(true) }

// Begin checks ctx and key before a call.
func (b *Bucket) Begin(ctx context.Context, op targets.Op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", op, key, b.name, err)
	}
	if err := targets.ValidateKey(key); err != nil {
		return fmt.Errorf("%s in %s: %w", op, b.name, err)
	}
	return nil
}

// BeginList checks ctx and prefix before a listing.
func (b *Bucket) BeginList(ctx context.Context, prefix string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", targets.OpList, prefix, b.name, err)
	}
	if err := targets.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("%s in %s: %w", targets.OpList, b.name, err)
	}
	return nil
}

// Fail wraps a classified error with the operation, key and target.
func (b *Bucket) Fail(op targets.Op, key string, err error) error {
	return fmt.Errorf("%s %q in %s: %w", op, key, b.name, err)
}

// NoBucket is the error for a bucket the server does not have.
func (b *Bucket) NoBucket() error {
	return fmt.Errorf("%w: bucket %s does not exist at %s: create it first", targets.ErrNoBucket, b.Bucket, b.where)
}

// CheckFailed wraps a classified error of CheckBucket.
func (b *Bucket) CheckFailed(err error) error {
	return fmt.Errorf("check bucket %s at %s: %w", b.Bucket, b.where, err)
}

// LockChecked ends a target's CheckObjectLock. err is the classified
// error of GetObjectLockConfiguration (nil if the server answered) and
// enabled whether the answer said Enabled.
func (b *Bucket) LockChecked(err error, enabled bool) error {
	var se *ServiceError
	switch {
	case err == nil && enabled:
		b.Seen()
		return nil
	case err == nil || errors.Is(err, targets.ErrNoObjectLock):
		return fmt.Errorf("%w: bucket %s at %s does not have Object Lock enabled: create the bucket with Object Lock enabled "+
			"(aws s3api create-bucket --object-lock-enabled-for-bucket), or turn it on for this bucket "+
			"(aws s3api put-object-lock-configuration with ObjectLockEnabled=Enabled; versioning must be enabled first), "+
			"or remove object_lock from the repository's settings", targets.ErrNoObjectLock, b.Bucket, b.where)
	case errors.As(err, &se) && (se.Status == http.StatusNotImplemented || se.Code == "NotImplemented"):
		// Not worth a retry: the server lacks the feature.
		return fmt.Errorf("%w: the server at %s does not implement Object Lock (%s): use one that does, or remove object_lock from the repository's settings",
			targets.ErrNoObjectLock, b.where, se.Msg)
	case errors.Is(err, targets.ErrAccessDenied):
		return fmt.Errorf("check object lock of bucket %s at %s (the credentials need s3:GetBucketObjectLockConfiguration): %w", b.Bucket, b.where, err)
	}
	return fmt.Errorf("check object lock of bucket %s at %s: %w", b.Bucket, b.where, err)
}

// StatMissing refines the classified error of a HEAD, whose 404 has no
// body to tell a missing key from a missing bucket. Until the bucket has
// been seen, a 404 is followed by check, a bucket check, so that a wrong
// bucket name is reported as such.
func (b *Bucket) StatMissing(ctx context.Context, err error, check func(context.Context) error) error {
	if errors.Is(err, targets.ErrNotFound) && !b.seen.Load() {
		if berr := check(ctx); errors.Is(berr, targets.ErrNoBucket) {
			return b.NoBucket()
		}
	}
	return err
}

// GetRange is targets.Target.GetRange up to the request: get fetches
// length > 0 bytes from off, and wraps its own errors. A zero length
// sends no GET, as no HTTP range is empty: stat checks the offset.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64,
	stat func(context.Context, string) (targets.ObjectInfo, error), get func() ([]byte, error),
) ([]byte, error) {
	if err := b.Begin(ctx, targets.OpGetRange, key); err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, b.Fail(targets.OpGetRange, key, fmt.Errorf("negative offset %d or length %d", off, length))
	}
	if length == 0 {
		info, err := stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, b.Fail(targets.OpGetRange, key, fmt.Errorf("offset %d of a %d-byte object: %w", off, info.Size, targets.ErrRange))
		}
		return []byte{}, nil
	}
	return get()
}

// ReadBody reads and closes a response body of the announced size; a
// short body (a connection cut mid-transfer) is io.ErrUnexpectedEOF.
func ReadBody(body io.ReadCloser, size int64) ([]byte, error) {
	defer body.Close()
	if size < 0 {
		return nil, errors.New("response without a length")
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(body, data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return data, nil
}
