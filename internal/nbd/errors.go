package nbd

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("client closed")
	// ErrProtocol marks replies that break the NBD protocol. The
	// connection is dropped when the reply stream can no longer be trusted.
	ErrProtocol = errors.New("protocol violation by server")
	// ErrUnknownExport: the server has no export of the requested name.
	ErrUnknownExport = errors.New("no such export")
	// ErrTLSRequired: the server insists on TLS, which this client lacks.
	ErrTLSRequired = errors.New("server requires TLS")
	// ErrNoContext: BlockStatus was asked for a metadata context the server
	// did not grant during the handshake (for example a bitmap that is not
	// exported).
	ErrNoContext = errors.New("metadata context not negotiated")
)

// OptionError is a negotiation option the server refused.
type OptionError struct {
	Option  uint32 // NBD_OPT_*
	Reply   uint32 // NBD_REP_ERR_*
	Message string // the server's explanation, if any
}

func (e *OptionError) Error() string {
	s := fmt.Sprintf("server refused %s with %s", optionName(e.Option), replyName(e.Reply))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap lets errors.Is match ErrUnknownExport and ErrTLSRequired.
func (e *OptionError) Unwrap() error {
	switch e.Reply {
	case repErrUnknown:
		return ErrUnknownExport
	case repErrTLSReqd:
		return ErrTLSRequired
	}
	return nil
}

// Error is a failure the server reported for a request.
type Error struct {
	Errno   uint32 // NBD error value; the values are Linux errno numbers
	Message string // from a structured error chunk, if any
	Offset  int64  // where the error happened, or -1 if the server did not say
}

func (e *Error) Error() string {
	s := "server error " + errnoName(e.Errno)
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap maps the NBD error value to the local syscall.Errno, so that
// errors.Is(err, syscall.EIO) works whatever the host's numbering.
func (e *Error) Unwrap() error {
	if _, local, ok := errnoInfo(e.Errno); ok {
		return local
	}
	return nil
}

// errnoInfo names the error values the NBD specification defines.
func errnoInfo(v uint32) (name string, local syscall.Errno, ok bool) {
	switch v {
	case 1:
		return "EPERM", syscall.EPERM, true
	case 5:
		return "EIO", syscall.EIO, true
	case 12:
		return "ENOMEM", syscall.ENOMEM, true
	case 22:
		return "EINVAL", syscall.EINVAL, true
	case 28:
		return "ENOSPC", syscall.ENOSPC, true
	case 75:
		return "EOVERFLOW", syscall.EOVERFLOW, true
	case 95:
		return "ENOTSUP", syscall.ENOTSUP, true
	case 108:
		return "ESHUTDOWN", syscall.ESHUTDOWN, true
	}
	return "", 0, false
}

func errnoName(v uint32) string {
	if name, _, ok := errnoInfo(v); ok {
		return name
	}
	return fmt.Sprintf("errno %d", v)
}

func optionName(o uint32) string {
	switch o {
	case optExportName:
		return "NBD_OPT_EXPORT_NAME"
	case optGo:
		return "NBD_OPT_GO"
	case optStructuredReply:
		return "NBD_OPT_STRUCTURED_REPLY"
	case optSetMetaContext:
		return "NBD_OPT_SET_META_CONTEXT"
	}
	return fmt.Sprintf("option %d", o)
}

func replyName(r uint32) string {
	switch r {
	case repErrUnsup:
		return "NBD_REP_ERR_UNSUP (option not supported)"
	case repErrPolicy:
		return "NBD_REP_ERR_POLICY (forbidden by server policy)"
	case repErrInvalid:
		return "NBD_REP_ERR_INVALID (invalid request)"
	case repErrPlatform:
		return "NBD_REP_ERR_PLATFORM (not supported on the server's platform)"
	case repErrTLSReqd:
		return "NBD_REP_ERR_TLS_REQD (TLS required)"
	case repErrUnknown:
		return "NBD_REP_ERR_UNKNOWN (no such export)"
	case repErrShutdown:
		return "NBD_REP_ERR_SHUTDOWN (server shutting down)"
	case repErrBlockSizeReqd:
		return "NBD_REP_ERR_BLOCK_SIZE_REQD (block size negotiation required)"
	case repErrTooBig:
		return "NBD_REP_ERR_TOO_BIG (request too big)"
	case repErrExtHeaderReqd:
		return "NBD_REP_ERR_EXT_HEADER_REQD (extended headers required)"
	}
	return fmt.Sprintf("reply type %#x", r)
}

// protocolErrorf formats an ErrProtocol.
func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
