package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// greetingTimeout bounds the wait for QEMU's greeting when ctx has no
// earlier deadline. QEMU accepts a second client's connection but stays
// silent until the first client leaves, so without a bound Dial would hang.
const greetingTimeout = 10 * time.Second

// oneClientHint ends the errors of Dial: the usual causes are a stopped VM,
// a wrong path, or another client (libvirt, a second drctl) on the socket.
const oneClientHint = "note: one QMP socket serves one client at a time"

// ErrClosed is wrapped by the errors of calls that fail because the
// connection ended: QEMU exited or closed the socket, or Close was called.
var ErrClosed = errors.New("QMP connection closed")

// Client is a connection to one QEMU's QMP socket. Its methods are safe for
// concurrent use; commands from several goroutines may be in flight at
// once and their replies are matched by id.
type Client struct {
	path    string
	conn    net.Conn
	version VersionTriple

	// writeLock holds one token. It is a channel rather than a mutex so that
	// a caller waiting behind a stuck write can give up when its ctx ends.
	writeLock chan struct{}

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	waiters map[*Waiter]struct{}
	err     error // why the connection ended; wraps ErrClosed; set once

	done chan struct{} // closed when the read loop has ended
}

// VersionTriple is a QEMU version number.
type VersionTriple struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
	Micro int `json:"micro"`
}

// greeting is the first message QEMU sends on a new connection.
type greeting struct {
	QMP *struct {
		Version struct {
			QEMU    VersionTriple `json:"qemu"`
			Package string        `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// Dial connects to the QMP unix socket at socketPath, reads QEMU's greeting
// and leaves capabilities negotiation mode, so that the returned Client can
// run any command. ctx bounds only this set-up. It does not retry: a VM that is still starting may not
// have created its socket yet, and the caller knows how long to wait.
func Dial(ctx context.Context, socketPath string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to QMP socket %s: %w: is the VM running and is %s its -qmp socket? %s",
			socketPath, err, socketPath, oneClientHint)
	}
	dec := json.NewDecoder(conn)
	g, err := readGreeting(ctx, conn, dec)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to QMP socket %s: %w", socketPath, err)
	}
	c := &Client{
		path:      socketPath,
		conn:      conn,
		version:   g.QMP.Version.QEMU,
		writeLock: make(chan struct{}, 1),
		pending:   make(map[uint64]chan reply),
		waiters:   make(map[*Waiter]struct{}),
		done:      make(chan struct{}),
	}
	go c.readLoop(dec)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to QMP socket %s: negotiate capabilities: %w", socketPath, err)
	}
	return c, nil
}

// readGreeting reads the greeting within ctx and greetingTimeout.
func readGreeting(ctx context.Context, conn net.Conn, dec *json.Decoder) (*greeting, error) {
	deadline := time.Now().Add(greetingTimeout)
	d, ok := ctx.Deadline()
	ctxDeadline := ok && d.Before(deadline)
	if ctxDeadline {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set greeting deadline: %w", err)
	}
	stop := interruptOnCancel(ctx, conn.SetReadDeadline)
	var g greeting
	err := dec.Decode(&g)
	stop()
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	if ctx.Err() != nil || timeout && ctxDeadline {
		cause := ctx.Err()
		if cause == nil { // the read deadline (ctx's) beat ctx's own timer
			cause = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("wait for QEMU's greeting: %w: is another client connected? %s", cause, oneClientHint)
	}
	if timeout {
		return nil, fmt.Errorf("no greeting from QEMU within %v: is another client connected? %s", greetingTimeout, oneClientHint)
	}
	if err != nil {
		return nil, fmt.Errorf("read QEMU's greeting: %w: is this a QMP socket (-qmp, not -monitor or -serial)?", err)
	}
	if g.QMP == nil {
		return nil, errors.New("read QEMU's greeting: no \"QMP\" member: is this a QMP socket (-qmp, not -monitor or -serial)?")
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clear greeting deadline: %w", err)
	}
	return &g, nil
}

// interruptOnCancel makes a blocked read or write on a connection return
// when ctx ends, by moving its deadline into the past. The returned stop
// must be called once the I/O is over; when it returns, the deadline is no
// longer touched, so the next I/O may set its own.
func interruptOnCancel(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		_ = setDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stopAfter() {
			<-fired
		}
	}
}

// Version returns the QEMU version from the greeting.
func (c *Client) Version() (major, minor, micro int) {
	return c.version.Major, c.version.Minor, c.version.Micro
}

// Close ends the connection. Pending calls fail with an error wrapping
// ErrClosed. QEMU keeps running; it then accepts the next client. Close may
// be called more than once.
func (c *Client) Close() error {
	c.fail(fmt.Errorf("%w: Close was called", ErrClosed))
	<-c.done
	return nil
}

// fail records why the connection ends, unless a reason is already known,
// and closes it; the read loop then wakes every waiting call.
func (c *Client) fail(reason error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = reason
	}
	c.mu.Unlock()
	c.conn.Close()
}

// closedErr returns why the connection ended, or nil while it is open.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// message is any message QEMU sends after the greeting: a reply (id and
// return or error) or an event (event, data, timestamp).
type message struct {
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`

	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// readLoop reads messages until the connection ends, hands replies to their
// callers and events to the waiters, then fails everything still waiting.
func (c *Client) readLoop(dec *json.Decoder) {
	var err error
	for {
		var m message
		if err = dec.Decode(&m); err != nil {
			break
		}
		if m.Event != "" {
			c.dispatchEvent(eventOf(&m))
			continue
		}
		c.dispatchReply(&m)
	}
	reason := fmt.Errorf("%w: read QMP socket %s: %w (did QEMU exit?)", ErrClosed, c.path, err)
	if errors.Is(err, io.EOF) {
		reason = fmt.Errorf("%w: QEMU closed QMP socket %s (did the VM exit?)", ErrClosed, c.path)
	}
	c.fail(reason)
	c.mu.Lock()
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

// dispatchReply hands a reply to the call waiting for its id. Replies
// without a known id are dropped: their caller gave up (ctx ended), or QEMU
// could not parse a request, which this client never sends malformed.
func (c *Client) dispatchReply(m *message) {
	var id uint64
	if err := json.Unmarshal(m.ID, &id); err != nil {
		return
	}
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- reply{ret: m.Return, err: m.Error}
	}
}
