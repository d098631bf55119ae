package s3util

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/drctl/drctl/targets"
)

// ServiceError is an S3 error answer or transport failure with a short
// message instead of the client library's long one; the library's error
// stays reachable through Unwrap.
type ServiceError struct {
	Msg string
	Err error
	// Status and Code are the server's answer, for callers that must
	// tell one refusal from another (an unimplemented call, say).
	Status int
	Code   string
}

func (e *ServiceError) Error() string { return e.Msg }
func (e *ServiceError) Unwrap() error { return e.Err }

// Answer is what a client library parsed from a server's error answer.
// Status 0 means no HTTP answer was parsed.
type Answer struct {
	Status  int
	Code    string
	Message string
}

// Classifier maps a failed call onto the targets sentinels and
// targets.Transient. What the server answered means the same whichever
// library sent the request; the fields hold what does depend on it.
type Classifier struct {
	// NoBucket is the error for a missing bucket.
	NoBucket func() error
	// WrongRegion, if set, is consulted for an answer that the bucket
	// lives in another region: it returns a message saying which, or ""
	// to keep the server's.
	WrongRegion func(err error) string
	// SendError, if set, finds the library's own wrapper of a request
	// that got no answer, and the error it carries (nil if none), which
	// says more than the wrapper.
	SendError func(err error) (cause error, ok bool)
	// NeedStatus makes a code without an HTTP status, once no code rule
	// matched, count as no answer. aws-sdk-go-v2 attaches the status to
	// every answer it parses, so such an error is its own; minio-go, on
	// the contrary, reports answers it cannot parse (a malformed header)
	// with a code and no status, and those are the server's fault.
	NeedStatus bool
}

// Classify maps err, whose parsed answer is a, onto the targets
// sentinels. lost is the sentinel for a failed precondition (ErrExists for
// create-only writes, ErrPrecondition for compare-and-swap, nil
// elsewhere). The caller's own cancellation wins over everything, and is
// never transient.
func (c *Classifier) Classify(ctx context.Context, err error, a Answer, lost error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if a.Status == 0 && a.Code == "" {
		return c.unanswered(err)
	}
	code, status := a.Code, a.Status
	se := &ServiceError{Err: err, Msg: fmt.Sprintf("HTTP %d %s", status, code), Status: status, Code: code}
	if a.Message != "" {
		se.Msg += ": " + a.Message
	}
	switch {
	case code == "NoSuchBucket":
		return c.NoBucket()
	case c.WrongRegion != nil && (status == 301 || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed"):
		if msg := c.WrongRegion(err); msg != "" {
			se.Msg = msg
		}
		return se
	case code == "NoSuchUpload":
		return se // the upload vanished under us: not "object not found"
	case code == "ObjectParentIsFile" || code == "ExistingObjectIsDirectory":
		// versitygw's posix back end, like a directory, cannot hold both
		// "a" and "a/b". Permanent: retrying will not change it.
		return se
	case code == "ObjectLockConfigurationNotFoundError":
		// A 404 about the bucket's settings, not a missing key.
		return fmt.Errorf("%w: %w", targets.ErrNoObjectLock, se)
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		return targets.ErrNotFound
	case lost != nil && (code == "PreconditionFailed" || status == 412):
		return lost
	case lost != nil && (code == "ConditionalRequestConflict" || status == 409):
		// A concurrent conditional write on the same key is in flight:
		// a lost race.
		return fmt.Errorf("%w (%s)", lost, se.Msg)
	case code == "InvalidRange" || status == 416:
		return targets.ErrRange
	case locked(a) && lost == targets.ErrExists:
		// A create-only write refused because a retained object is
		// there (a bucket without versioning) did find the key taken:
		// its callers, and the retry layer's recovery from a lost
		// answer, look for ErrExists.
		return fmt.Errorf("%w, %w: %w", targets.ErrExists, targets.ErrLocked, se)
	case locked(a):
		// Before the 403 rule: Amazon answers a locked object with a
		// plain AccessDenied, and prune must not mistake it for a
		// permission problem.
		return fmt.Errorf("%w: %w", targets.ErrLocked, se)
	case status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		return fmt.Errorf("%w: %w", targets.ErrAccessDenied, se)
	case status >= 500 || status == 429 || status == 409 || code == "SlowDown" ||
		code == "RequestTimeout" || code == "RequestTimeTooSkewed" || code == "OperationAborted":
		return targets.Transient(se)
	case status == 0 && c.NeedStatus:
		return c.unanswered(err)
	}
	return se
}

// locked reports whether a is a refusal because of Object Lock
// retention or a legal hold. There is no dedicated code: Amazon S3,
// versitygw and Ceph answer 403 AccessDenied "Access Denied because object
// protected by object lock.", MinIO 400 InvalidRequest "Object is WORM
// protected and cannot be overwritten"; only the message tells.
func locked(a Answer) bool {
	msg := strings.ToLower(a.Message)
	switch a.Code {
	case "AccessDenied", "InvalidRequest":
		return strings.Contains(msg, "object lock") || strings.Contains(msg, "worm protected")
	case "ObjectLocked":
		return true
	}
	return false
}

// unanswered classifies a failure to get an answer at all: a network
// failure is transient; anything else the library refused on its own
// keeps its own words.
func (c *Classifier) unanswered(err error) error {
	if c.isNetwork(err) {
		return targets.Transient(&ServiceError{Err: err, Msg: c.networkMessage(err)})
	}
	return err
}

// isNetwork reports whether err is a failure to get an answer: refused,
// reset, timed out, cut mid-body. A *url.Error is a net.Error.
func (c *Classifier) isNetwork(err error) bool {
	if c.SendError != nil {
		if _, ok := c.SendError(err); ok {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE)
}

// networkMessage is the innermost useful text of a network error, e.g.
// "dial tcp 127.0.0.1:1: connect: connection refused".
func (c *Classifier) networkMessage(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the server without a complete answer: " + err.Error()
	}
	if c.SendError != nil {
		if cause, ok := c.SendError(err); ok && cause != nil {
			return cause.Error()
		}
	}
	return err.Error()
}
