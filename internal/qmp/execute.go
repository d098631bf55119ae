package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// Error is an error reply from QEMU, such as
// {"class":"GenericError","desc":"Bitmap already exists: b0"}.
type Error struct {
	// Class is QEMU's error class: GenericError nearly always, else
	// CommandNotFound, DeviceNotActive, DeviceNotFound or KVMMissingCap.
	Class string `json:"class"`
	// Desc is QEMU's message for humans; its wording is not stable.
	Desc string `json:"desc"`
	// Command is the command that failed.
	Command string `json:"-"`
}

// Error returns e.g. "QMP transaction: GenericError: Bitmap already exists: b0".
func (e *Error) Error() string {
	return "QMP " + e.Command + ": " + e.Class + ": " + e.Desc
}

// request is one command on the wire.
type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        uint64          `json:"id"`
}

// reply is what the read loop hands to a waiting call.
type reply struct {
	ret json.RawMessage
	err *Error
}

// Execute runs a QMP command. args is marshalled to JSON as the command's
// arguments (nil: none); the reply's return value is unmarshalled into
// result unless result is nil. A QEMU error reply comes back as *Error.
//
// When ctx ends first, Execute returns at once with ctx's error and the
// late reply is discarded: QEMU may still carry the command out. When the
// connection ends, the error wraps ErrClosed.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	req := request{Execute: command}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("QMP %s: marshal arguments: %w", command, err)
		}
		if !bytes.Equal(raw, []byte("null")) { // a typed nil pointer
			req.Arguments = raw
		}
	}

	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	c.nextID++
	req.ID = c.nextID
	c.pending[req.ID] = ch
	c.mu.Unlock()

	line, err := json.Marshal(req)
	if err != nil {
		c.forget(req.ID)
		return fmt.Errorf("QMP %s: marshal request: %w", command, err)
	}
	if err := c.send(ctx, append(line, '\n')); err != nil {
		c.forget(req.ID)
		return fmt.Errorf("QMP %s: %w", command, err)
	}

	select {
	case r := <-ch:
		return r.decode(command, result)
	case <-ctx.Done():
		c.forget(req.ID)
		select {
		case r := <-ch: // the reply won the race: report what QEMU did
			return r.decode(command, result)
		default:
		}
		return fmt.Errorf("QMP %s: wait for reply: %w (the command may still take effect in QEMU)", command, ctx.Err())
	case <-c.done:
		select {
		case r := <-ch:
			return r.decode(command, result)
		default:
		}
		return fmt.Errorf("QMP %s: %w", command, c.closedErr())
	}
}

// send writes one request line. A write cut short by ctx or an I/O error
// may leave half a request on the socket, after which the stream is
// unusable, so the connection is then closed.
func (c *Client) send(ctx context.Context, line []byte) error {
	select {
	case c.writeLock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait to send: %w", ctx.Err())
	case <-c.done:
		return c.closedErr()
	}
	defer func() { <-c.writeLock }()

	deadline, _ := ctx.Deadline() // zero when there is none
	if err := c.conn.SetWriteDeadline(deadline); err != nil {
		return c.sendFailed(err)
	}
	stop := interruptOnCancel(ctx, c.conn.SetWriteDeadline)
	n, err := c.conn.Write(line)
	stop()
	switch {
	case err == nil:
		return nil
	case n == 0 && ctx.Err() != nil:
		return fmt.Errorf("send: %w", ctx.Err())
	default:
		return c.sendFailed(err)
	}
}

// sendFailed closes the connection after a failed write and returns the
// reason, which wraps ErrClosed.
func (c *Client) sendFailed(err error) error {
	c.fail(fmt.Errorf("%w: write to QMP socket %s: %w (did QEMU exit?)", ErrClosed, c.path, err))
	return c.closedErr()
}

// forget drops the call with this id from the pending set, so that a late
// reply is discarded.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// decode turns a reply into the call's result or error.
func (r reply) decode(command string, result any) error {
	if r.err != nil {
		e := *r.err
		e.Command = command
		return &e
	}
	if result == nil {
		return nil
	}
	if len(r.ret) == 0 {
		return fmt.Errorf("QMP %s: decode reply: no return value", command)
	}
	if err := json.Unmarshal(r.ret, result); err != nil {
		return fmt.Errorf("QMP %s: decode reply: %w", command, err)
	}
	return nil
}
