package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/drctl/drctl/targets"
)

// serviceError is an S3 error answer or transport failure, with a short
// message instead of the SDK's long one; the SDK error stays reachable
// through Unwrap.
type serviceError struct {
	msg string
	err error
}

func (e *serviceError) Error() string { return e.msg }
func (e *serviceError) Unwrap() error { return e.err }

// classify maps an SDK error onto the targets sentinels. lost is the
// sentinel for a failed precondition (ErrExists for create-only writes,
// ErrPrecondition for compare-and-swap, nil elsewhere). The caller's own
// cancellation wins over everything, and is never transient.
func (t *Target) classify(ctx context.Context, err error, lost error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	code, msg := "", ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	status := 0
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	se := &serviceError{err: err, msg: fmt.Sprintf("HTTP %d %s", status, code)}
	if msg != "" {
		se.msg += ": " + msg
	}
	switch {
	case code == "NoSuchBucket":
		return t.noBucket()
	case status == 301 || code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed":
		// The bucket lives in another region than the one configured.
		if r := bucketRegion(err); r != "" {
			se.msg = fmt.Sprintf("bucket %s is in region %s, not %s: set AWS_REGION or the region option", t.bucket, r, t.region)
		}
		return se
	case code == "NoSuchUpload":
		return se // the upload vanished under us: not "object not found"
	case code == "ObjectParentIsFile" || code == "ExistingObjectIsDirectory":
		// versitygw's posix back end, like a directory, cannot hold both
		// "a" and "a/b". Permanent: retrying will not change it.
		return se
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		return targets.ErrNotFound
	case lost != nil && (code == "PreconditionFailed" || status == 412):
		return lost
	case lost != nil && (code == "ConditionalRequestConflict" || status == 409):
		// A concurrent conditional write on the same key is in flight:
		// a lost race.
		return fmt.Errorf("%w (%s)", lost, se.msg)
	case code == "InvalidRange" || status == 416:
		return targets.ErrRange
	case status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		return fmt.Errorf("%w: %w", targets.ErrAccessDenied, se)
	case status >= 500 || status == 429 || status == 409 || code == "SlowDown" ||
		code == "RequestTimeout" || code == "RequestTimeTooSkewed" || code == "OperationAborted":
		return targets.Transient(se)
	case status == 0 && isNetwork(err):
		se.msg = networkMessage(err)
		return targets.Transient(se)
	}
	if status == 0 {
		se.msg = err.Error()
	}
	return se
}

// bucketRegion is the region an S3 error answer says the bucket is in.
func bucketRegion(err error) string {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	return ""
}

// isNetwork reports whether err is a failure to get an answer: refused,
// reset, timed out, cut mid-body.
func isNetwork(err error) bool {
	var send *smithyhttp.RequestSendError
	var ne net.Error
	return errors.As(err, &send) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE)
}

// networkMessage is the innermost useful text of a network error, e.g.
// "dial tcp 127.0.0.1:1: connect: connection refused".
func networkMessage(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the server without a complete answer: " + err.Error()
	}
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) && send.Err != nil {
		return send.Err.Error()
	}
	return err.Error()
}
