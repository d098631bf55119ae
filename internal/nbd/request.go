package nbd

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// abandonGrace is how long a cancelled caller waits for the reply reader
// to finish copying a chunk into the caller's buffer before giving up on
// the whole connection. A healthy server delivers a 32 MiB chunk well
// within it; a server stalled in the middle of a chunk never does.
const abandonGrace = 250 * time.Millisecond

// request is one command in flight.
type request struct {
	cmd    uint16
	cookie uint64
	off    uint64
	length uint32
	buf    []byte // NBD_CMD_READ: the caller's buffer, length bytes
	ctxID  uint32 // NBD_CMD_BLOCK_STATUS: the context whose extents to keep

	// lock is held by the reply reader while it writes into buf, and
	// briefly by a caller abandoning the request: once abandoned is set
	// and the caller has held the lock, buf is never touched again, so the
	// caller may return and reuse it.
	lock      chan struct{}
	abandoned atomic.Bool
	done      chan struct{} // closed when the reply is complete

	// Set only by the reply reader, read after done is closed.
	err       error
	spans     []span       // parts of buf filled so far (reads)
	descs     []descriptor // extents for ctxID (block status)
	gotStatus bool
}

// span is a byte range of the export.
type span struct{ off, len uint64 }

// descriptor is one block status extent as sent: relative to the
// previous one.
type descriptor struct{ length, flags uint32 }

func newRequest(cmd uint16, off uint64, length uint32) *request {
	return &request{
		cmd: cmd, off: off, length: length,
		lock: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// fail records the first error of a request.
func (r *request) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// start registers r under a new cookie and sends it.
func (c *Client) start(ctx context.Context, r *request) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.cookie++
	r.cookie = c.cookie
	c.pending[r.cookie] = r
	c.mu.Unlock()

	var hdr [requestSize]byte
	putRequest(&hdr, r.cmd, r.cookie, r.off, r.length)
	if err := c.write(ctx, hdr[:]); err != nil {
		c.mu.Lock()
		delete(c.pending, r.cookie)
		c.mu.Unlock()
		c.abandon(r)
		return err
	}
	return nil
}

// write sends b whole, or not at all and returns ctx's error, or tears
// the connection down: half a request would corrupt the stream.
func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	release := interruptOnDone(ctx, c.conn.SetWriteDeadline)
	n, err := c.conn.Write(b)
	release()
	switch {
	case err == nil:
		return nil
	case n > 0:
		err = fmt.Errorf("request half sent: %w", err)
		c.teardown(err)
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	err = fmt.Errorf("connection to server lost: %w", err)
	c.teardown(err)
	return err
}

// wait waits for r's reply. If ctx ends first r is abandoned: its reply
// is still read, later, but dropped.
func (c *Client) wait(ctx context.Context, r *request) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		select {
		case <-r.done:
			return r.err
		default:
		}
		c.abandon(r)
		return ctx.Err()
	}
}

// abandon makes sure the reply reader will not write into r.buf any more,
// so the caller can return. If the reader is copying a chunk into it and
// does not finish within abandonGrace, the connection is torn down.
func (c *Client) abandon(r *request) {
	r.abandoned.Store(true)
	select {
	case r.lock <- struct{}{}:
	default:
		t := time.NewTimer(abandonGrace)
		select {
		case r.lock <- struct{}{}:
		case <-t.C:
			c.teardown(errors.New("gave up on a request while the server was sending its data"))
			r.lock <- struct{}{}
		}
		t.Stop()
	}
	<-r.lock
}
