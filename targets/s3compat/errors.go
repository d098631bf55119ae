package s3compat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/drctl/drctl/targets"
)

// serviceError is an error answer or transport failure with a short
// message; minio-go's error stays reachable through Unwrap.
type serviceError struct {
	msg string
	err error
}

func (e *serviceError) Error() string { return e.msg }
func (e *serviceError) Unwrap() error { return e.err }

// classify maps a minio-go error onto the targets sentinels; lost is the
// sentinel for a failed precondition (nil for unconditional calls). The
// caller's cancellation wins and is never transient.
func (t *Target) classify(ctx context.Context, err error, lost error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var er minio.ErrorResponse
	isResp := errors.As(err, &er)
	code, status := er.Code, er.StatusCode
	se := &serviceError{err: err, msg: fmt.Sprintf("HTTP %d %s", status, code)}
	if er.Message != "" {
		se.msg += ": " + er.Message
	}
	switch {
	case !isResp || (status == 0 && code == ""):
		if isNetwork(err) {
			return targets.Transient(&serviceError{err: err, msg: networkMessage(err)})
		}
		return err
	case code == "NoSuchBucket":
		return t.noBucket()
	case code == "NoSuchUpload":
		return se
	case code == "ObjectParentIsFile" || code == "ExistingObjectIsDirectory":
		// versitygw's posix back end, like a directory, cannot hold both
		// "a" and "a/b". Permanent.
		return se
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		return targets.ErrNotFound
	case lost != nil && (code == "PreconditionFailed" || status == 412):
		return lost
	case lost != nil && (code == "ConditionalRequestConflict" || status == 409):
		return fmt.Errorf("%w (%s)", lost, se.msg)
	case code == "InvalidRange" || status == 416:
		return targets.ErrRange
	case status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken":
		return fmt.Errorf("%w: %w", targets.ErrAccessDenied, se)
	case status >= 500 || status == 429 || status == 409 || code == "SlowDown" ||
		code == "RequestTimeout" || code == "RequestTimeTooSkewed" || code == "OperationAborted":
		return targets.Transient(se)
	}
	return se
}

// isNetwork reports whether err is a failure to get an answer: refused,
// reset, timed out, cut mid-body.
func isNetwork(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE)
}

func networkMessage(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed by the server without a complete answer: " + err.Error()
	}
	return err.Error()
}
