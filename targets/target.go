// Package targets stores a repository's objects on a local directory or an
// S3-compatible bucket. Every implementation passes the conformance suite in
// targets/targettest; cross-cutting concerns (retries, request accounting)
// are thin wrappers around a Target.
package targets

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them (errors.Is works) and add what
// failed and where.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: a create-only write found the key already present.
	ErrExists = errors.New("object already exists")
	// ErrPrecondition: a compare-and-swap write lost (the object changed
	// since the caller read it, or it was deleted).
	ErrPrecondition = errors.New("precondition failed")
	// ErrNoBucket: the bucket (or the base directory) does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrAccessDenied: the credentials were refused.
	ErrAccessDenied = errors.New("access denied")
	// ErrRange: GetRange asked for bytes past the end of the object, which
	// means the caller's idea of the object (an index entry, a pack header)
	// does not match what is stored: truncation or corruption.
	ErrRange = errors.New("range beyond end of object")
	// ErrLocked: the server refused to delete or overwrite an object
	// because S3 Object Lock retains it (a retention period or legal hold
	// not yet over). Unlike ErrAccessDenied it says nothing about the
	// credentials: the same call succeeds once the retention ends. It is
	// not transient either: retrying within seconds cannot help.
	ErrLocked = errors.New("object is under object lock retention")
	// ErrNoObjectLock: object lock was asked for, but the target cannot
	// keep objects from deletion (a local directory, a bucket without
	// Object Lock, a server without the feature).
	ErrNoObjectLock = errors.New("object lock not available")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key  string
	Size int64
	// ETag is an opaque version tag for PutIfMatch. It changes whenever the
	// content changes; on S3 rewriting identical bytes may keep the same
	// tag (it is the content's MD5), which is harmless for compare-and-swap
	// because the state is then indistinguishable. The same object reports
	// the same tag from Put, Get, Stat and List.
	ETag    string
	ModTime time.Time
}

// Target is the storage a repository lives on. Keys are slash-separated
// relative paths such as "data/ab/abcdef…". All methods are safe for
// concurrent use.
type Target interface {
	// String names the target for messages, e.g. "s3:http://host/bucket/prefix".
	String() string

	// Get reads a whole object.
	Get(ctx context.Context, key string) ([]byte, ObjectInfo, error)
	// GetRange reads length bytes at off. A range past the end is an error.
	GetRange(ctx context.Context, key string, off, length int64) ([]byte, error)
	// Stat returns an object's size and version tag.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// Put writes (or overwrites) an object atomically: readers see the old
	// or the new content, never a partial one.
	Put(ctx context.Context, key string, data []byte) (ObjectInfo, error)
	// PutIfAbsent writes only if the key does not exist (If-None-Match: *).
	// Of concurrent callers exactly one succeeds; the others get ErrExists.
	PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error)
	// PutIfMatch replaces an object only while its tag still equals etag
	// (If-Match). Of concurrent callers with the same etag exactly one
	// succeeds; the others get ErrPrecondition. A missing key gives
	// ErrNotFound.
	PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error)

	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, following pagination. An error from fn stops the
	// listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes an object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// transientError marks an error worth retrying: a 5xx, a throttle, a
// connection reset or refused. Implementations classify errors once, at the
// boundary; nobody above them matches strings.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// Transient marks err as retryable. nil stays nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err: err}
}

// IsTransient reports whether err (or an error it wraps) was marked by
// Transient.
func IsTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// UploadCleaner is implemented by targets where an upload cut short leaves
// parts behind that List does not show but the store keeps and bills: S3
// multipart uploads whose process was killed before it could abort them.
type UploadCleaner interface {
	// AbortStaleUploads aborts the incomplete uploads of keys under prefix
	// started before olderThan, and returns how many it aborted.
	AbortStaleUploads(ctx context.Context, prefix string, olderThan time.Time) (int, error)
}

// As finds a target of type T in t or in the targets it wraps (wrappers
// have an Unwrap method), for the optional interfaces such as
// UploadCleaner.
func As[T any](t Target) (T, bool) {
	for t != nil {
		if v, ok := t.(T); ok {
			return v, true
		}
		u, ok := t.(interface{ Unwrap() Target })
		if !ok {
			break
		}
		t = u.Unwrap()
	}
	var zero T
	return zero, false
}
