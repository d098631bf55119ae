package nbd

import (
	"context"
	"fmt"
	"io"
)

// ReadAt fills p with the export's bytes from offset off. The range must
// lie inside the export. Reads larger than the server's maximum request
// are split, and the parts are all sent before waiting for any, so one
// large ReadAt already keeps the server busy; several goroutines calling
// ReadAt at once share the connection the same way. Holes the server
// reports read as zeros.
//
// If ctx ends first, ReadAt returns at once and p is no longer written to;
// the reply is dropped when it comes. Should the server be in the middle
// of sending this read's data and not finish within a quarter second, the
// connection is closed instead, failing the client's other requests.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := c.checkRange(off, int64(len(p))); err != nil {
		return fmt.Errorf("nbd: read %d bytes at offset %d: %w", len(p), off, err)
	}
	if len(p) == 0 {
		return nil
	}
	var err error
	if a := int64(c.minBlock); off%a == 0 && int64(len(p))%a == 0 {
		err = c.read(ctx, p, off)
	} else {
		err = c.readUnaligned(ctx, p, off)
	}
	if err != nil {
		return fmt.Errorf("nbd: read %d bytes at offset %d: %w", len(p), off, err)
	}
	return nil
}

// read sends the requests for p and waits for all of them.
func (c *Client) read(ctx context.Context, p []byte, off int64) error {
	step := int(c.maxRead)
	reqs := make([]*request, 0, (len(p)+step-1)/step)
	var err error
	for at := 0; at < len(p); at += step {
		n := min(step, len(p)-at)
		r := newRequest(cmdRead, uint64(off)+uint64(at), uint32(n))
		r.buf = p[at : at+n]
		if err = c.start(ctx, r); err != nil {
			break
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if err != nil {
			// Some part failed: the caller gets p back now.
			c.abandon(r)
			continue
		}
		err = c.wait(ctx, r)
	}
	return err
}

// readUnaligned serves a read that breaks the server's minimum block
// size, which the client promised to respect, through a bounce buffer
// covering the whole blocks around it.
func (c *Client) readUnaligned(ctx context.Context, p []byte, off int64) error {
	a := int64(c.minBlock)
	lo := off - off%a
	hi := min(alignUp(off+int64(len(p)), a), c.size)
	buf := make([]byte, hi-lo)
	if err := c.read(ctx, buf, lo); err != nil {
		return err
	}
	copy(p, buf[off-lo:])
	return nil
}

// checkRange checks that [off, off+n) lies inside the export.
func (c *Client) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > c.size || n > c.size-off {
		return fmt.Errorf("range [%d, +%d) is outside the export's %d bytes", off, n, c.size)
	}
	return nil
}

func alignUp(v, a int64) int64 {
	if r := v % a; r != 0 {
		return v + a - r
	}
	return v
}

// ReaderAt adapts the client to io.ReaderAt for code that wants one, such
// as io.NewSectionReader; every read uses ctx. Reads reaching past the
// end of the export return the bytes up to it and io.EOF.
func (c *Client) ReaderAt(ctx context.Context) io.ReaderAt {
	return readerAt{ctx: ctx, c: c}
}

type readerAt struct {
	ctx context.Context
	c   *Client
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= r.c.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.c.size-off))
	if err := r.c.ReadAt(r.ctx, p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
