package nbd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// readLoop reads replies until the connection fails or closes, then fails
// whatever is still pending. It is the only reader of the connection after
// the handshake.
func (c *Client) readLoop(br *bufio.Reader) {
	c.shutdown(c.readReplies(br))
	close(c.readerDone)
}

// readReplies handles reply messages until one cannot be handled: an I/O
// error, or a reply that desynchronises the stream.
func (c *Client) readReplies(br *bufio.Reader) error {
	for {
		if err := c.readReply(br); err != nil {
			return err
		}
	}
}

// shutdown fails every pending request after the reply stream ended.
func (c *Client) shutdown(err error) {
	c.mu.Lock()
	if c.err == nil {
		if errors.Is(err, ErrProtocol) {
			c.err = fmt.Errorf("dropped the connection: %w", err)
		} else {
			c.err = fmt.Errorf("connection to server lost: %w", err)
		}
	}
	cause := c.err
	pending := c.pending
	c.pending = map[uint64]*request{}
	c.mu.Unlock()
	c.conn.Close()
	for _, r := range pending {
		r.err = cause
		close(r.done)
	}
}

// readReply handles one simple reply or one structured reply chunk.
// Problems confined to one request are recorded on it; the returned error
// means the stream is broken.
func (c *Client) readReply(br *bufio.Reader) error {
	var h [chunkHeaderSize]byte
	if _, err := io.ReadFull(br, h[:4]); err != nil {
		return err
	}
	switch magic := be.Uint32(h[:]); magic {
	case magicSimple:
		if _, err := io.ReadFull(br, h[4:simpleReplySize]); err != nil {
			return unexpectedEOF(err)
		}
		return c.simpleReply(br, be.Uint32(h[4:]), be.Uint64(h[8:]))
	case magicStructured:
		if !c.structured {
			return protocolErrorf("structured reply that was not negotiated")
		}
		if _, err := io.ReadFull(br, h[4:chunkHeaderSize]); err != nil {
			return unexpectedEOF(err)
		}
		return c.chunk(br, be.Uint16(h[4:]), be.Uint16(h[6:]), be.Uint64(h[8:]), be.Uint32(h[16:]))
	default:
		return protocolErrorf("bad reply magic %#08x", magic)
	}
}

// lookup finds the pending request of a cookie.
func (c *Client) lookup(cookie uint64) (*request, error) {
	c.mu.Lock()
	r := c.pending[cookie]
	c.mu.Unlock()
	if r == nil {
		return nil, protocolErrorf("reply for unknown cookie %d", cookie)
	}
	return r, nil
}

func (c *Client) simpleReply(br *bufio.Reader, errno uint32, cookie uint64) error {
	r, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	switch {
	case errno != 0:
		r.fail(&Error{Errno: errno, Offset: -1})
	case r.cmd == cmdRead && c.structured:
		// The spec forbids it, and whether data follows is unknowable.
		return protocolErrorf("simple reply to a read after structured replies were negotiated")
	case r.cmd == cmdRead:
		if err := c.fill(br, r, 0, uint64(r.length)); err != nil {
			return err
		}
		r.spans = append(r.spans, span{r.off, uint64(r.length)})
	case r.cmd == cmdBlockStatus:
		r.fail(protocolErrorf("simple reply to block status"))
	}
	c.finish(r)
	return nil
}

// chunk handles one structured reply chunk whose header has been read.
func (c *Client) chunk(br *bufio.Reader, flags, typ uint16, cookie uint64, length uint32) error {
	r, err := c.lookup(cookie)
	if err != nil {
		return err
	}
	switch {
	case typ == chunkOffsetData:
		err = c.dataChunk(br, r, length)
	case typ == chunkOffsetHole:
		err = c.holeChunk(br, r, length)
	case typ == chunkBlockStatus:
		err = statusChunk(br, r, length)
	case typ == chunkNone:
		if length != 0 || flags&replyFlagDone == 0 {
			r.fail(protocolErrorf("NBD_REPLY_TYPE_NONE of %d bytes, flags %#x", length, flags))
		}
		err = discard(br, uint64(length))
	case typ&chunkErrBit != 0:
		err = errorChunk(br, r, typ, length)
	default:
		r.fail(protocolErrorf("unknown reply chunk type %d", typ))
		err = discard(br, uint64(length))
	}
	if err != nil {
		return err
	}
	if flags&replyFlagDone != 0 {
		c.finish(r)
	}
	return nil
}

// dataChunk copies an NBD_REPLY_TYPE_OFFSET_DATA payload straight into the
// caller's buffer.
func (c *Client) dataChunk(br *bufio.Reader, r *request, length uint32) error {
	if r.cmd != cmdRead || length < 8 {
		r.fail(protocolErrorf("data chunk of %d bytes for command %d", length, r.cmd))
		return discard(br, uint64(length))
	}
	var b [8]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return unexpectedEOF(err)
	}
	off, n := be.Uint64(b[:]), uint64(length-8)
	at, ok := r.within(off, n)
	if !ok {
		r.fail(protocolErrorf("data chunk [%d, +%d) outside the read [%d, +%d)", off, n, r.off, r.length))
		return discard(br, n)
	}
	if err := c.fill(br, r, at, n); err != nil {
		return err
	}
	r.addSpan(off, n)
	return nil
}

// holeChunk zeroes the part of the caller's buffer that an
// NBD_REPLY_TYPE_OFFSET_HOLE covers.
func (c *Client) holeChunk(br *bufio.Reader, r *request, length uint32) error {
	if r.cmd != cmdRead || length != 12 {
		r.fail(protocolErrorf("hole chunk of %d bytes for command %d", length, r.cmd))
		return discard(br, uint64(length))
	}
	var b [12]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return unexpectedEOF(err)
	}
	off, n := be.Uint64(b[:]), uint64(be.Uint32(b[8:]))
	at, ok := r.within(off, n)
	if !ok || n == 0 {
		r.fail(protocolErrorf("hole chunk [%d, +%d) outside the read [%d, +%d)", off, n, r.off, r.length))
		return nil
	}
	r.lock <- struct{}{}
	if !r.abandoned.Load() {
		clear(r.buf[at : at+n])
	}
	<-r.lock
	r.addSpan(off, n)
	return nil
}

// statusChunk keeps the extents of the request's metadata context and
// skips the other contexts' chunks.
func statusChunk(br *bufio.Reader, r *request, length uint32) error {
	if r.cmd != cmdBlockStatus || length < 12 || (length-4)%8 != 0 || length > maxMetaChunk {
		r.fail(protocolErrorf("block status chunk of %d bytes for command %d", length, r.cmd))
		return discard(br, uint64(length))
	}
	var b [4]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return unexpectedEOF(err)
	}
	if id := be.Uint32(b[:]); id != r.ctxID {
		return discard(br, uint64(length-4))
	}
	p := make([]byte, length-4)
	if _, err := io.ReadFull(br, p); err != nil {
		return unexpectedEOF(err)
	}
	if r.gotStatus {
		r.fail(protocolErrorf("two block status chunks for context %d", r.ctxID))
		return nil
	}
	r.gotStatus = true
	r.descs = make([]descriptor, 0, len(p)/8)
	for i := 0; i < len(p); i += 8 {
		d := descriptor{length: be.Uint32(p[i:]), flags: be.Uint32(p[i+4:])}
		if d.length == 0 {
			r.fail(protocolErrorf("block status extent of length 0"))
			return nil
		}
		r.descs = append(r.descs, d)
	}
	return nil
}

// errorChunk records the server's error for the request. Unknown error
// chunk types share the layout of NBD_REPLY_TYPE_ERROR.
func errorChunk(br *bufio.Reader, r *request, typ uint16, length uint32) error {
	if length < 6 || length > 6+maxString+8 {
		r.fail(protocolErrorf("error chunk of %d bytes", length))
		return discard(br, uint64(length))
	}
	p := make([]byte, length)
	if _, err := io.ReadFull(br, p); err != nil {
		return unexpectedEOF(err)
	}
	e := &Error{Errno: be.Uint32(p), Offset: -1}
	mlen := int(be.Uint16(p[4:]))
	if 6+mlen > len(p) {
		r.fail(protocolErrorf("error chunk message of %d bytes in a %d-byte chunk", mlen, length))
		return nil
	}
	e.Message = cleanMessage(p[6 : 6+mlen])
	if typ == chunkErrorOffset {
		if len(p) != 6+mlen+8 {
			r.fail(protocolErrorf("error-offset chunk of %d bytes", length))
			return nil
		}
		off := be.Uint64(p[6+mlen:])
		if _, ok := r.within(off, 1); !ok {
			r.fail(protocolErrorf("error offset %d outside the request [%d, +%d)", off, r.off, r.length))
			return nil
		}
		e.Offset = int64(off)
	}
	if e.Errno == 0 {
		r.fail(protocolErrorf("error chunk without an error value: %s", e.Message))
		return nil
	}
	r.fail(e)
	return nil
}

// within converts [off, off+n) to an index into the request's range, if
// it lies inside it.
func (r *request) within(off, n uint64) (at uint64, ok bool) {
	if off < r.off {
		return 0, false
	}
	at = off - r.off
	if at > uint64(r.length) || n > uint64(r.length)-at {
		return 0, false
	}
	return at, true
}

func (r *request) addSpan(off, n uint64) {
	if n > 0 {
		r.spans = append(r.spans, span{off, n})
	}
}

// fill reads n bytes of payload into the request's buffer at index at,
// or drops them if the caller has abandoned the request.
func (c *Client) fill(br *bufio.Reader, r *request, at, n uint64) error {
	r.lock <- struct{}{}
	defer func() { <-r.lock }()
	if r.abandoned.Load() {
		return discard(br, n)
	}
	_, err := io.ReadFull(br, r.buf[at:at+n])
	return unexpectedEOF(err)
}

// finish completes a request after its last reply chunk.
func (c *Client) finish(r *request) {
	c.mu.Lock()
	delete(c.pending, r.cookie)
	c.mu.Unlock()
	if r.err == nil {
		switch r.cmd {
		case cmdRead:
			r.err = checkCoverage(r.spans, r.off, uint64(r.length))
		case cmdBlockStatus:
			if !r.gotStatus {
				r.err = protocolErrorf("no block status for context %d", r.ctxID)
			}
		}
	}
	close(r.done)
}

// checkCoverage verifies that a successful read's chunks covered the
// whole range exactly once: the spec forbids overlaps, and a gap would
// leave stale bytes in the caller's buffer.
func checkCoverage(spans []span, off, length uint64) error {
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.off < b.off:
			return -1
		case a.off > b.off:
			return 1
		}
		return 0
	})
	next := off
	for _, s := range spans {
		if s.off != next {
			return protocolErrorf("read reply chunks leave a gap or overlap at offset %d", min(s.off, next))
		}
		next += s.len
	}
	if next != off+length {
		return protocolErrorf("read reply ends at offset %d, short of %d", next, off+length)
	}
	return nil
}

// discard skips n bytes of payload.
func discard(br *bufio.Reader, n uint64) error {
	_, err := io.CopyN(io.Discard, br, int64(n))
	return unexpectedEOF(err)
}

// unexpectedEOF reports an EOF in the middle of a message as such.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
