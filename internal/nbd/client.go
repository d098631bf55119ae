package nbd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// closeTimeout bounds how long Close waits for the server: to accept
// NBD_CMD_DISC, and to answer requests still in flight.
const closeTimeout = 2 * time.Second

// Options tune a connection.
type Options struct {
	// MetaContexts are the metadata contexts to select for BlockStatus,
	// such as ContextBaseAllocation or DirtyBitmapContext("dr-123").
	// Contexts the server does not offer are left out without error
	// (QEMU simply omits a bitmap it does not export); ContextID tells
	// which were granted.
	MetaContexts []string
}

// Client is one connection to one export. Its methods may be called from
// several goroutines at once; their requests are pipelined on the
// connection.
type Client struct {
	conn     net.Conn
	size     int64
	flags    uint16
	contexts map[string]uint32 // granted metadata contexts; read-only after Dial
	// structured: the server sends structured replies (needed for
	// BlockStatus, and lets reads skip holes).
	structured bool
	minBlock   uint32 // requests are aligned to this
	maxRead    uint32 // the largest NBD_CMD_READ to send

	wmu sync.Mutex // one request header on the wire at a time

	mu      sync.Mutex
	pending map[uint64]*request // by cookie, until the final reply chunk
	cookie  uint64              // the last cookie handed out
	err     error               // why no new request may start; set once
	closed  bool

	readerDone chan struct{} // closed when the reply reader has exited
}

// Dial connects to an NBD server, negotiates, and opens export. network
// and address are as for net.Dial ("unix" and a socket path, or "tcp" and
// host:port). ctx bounds the connection and the handshake only.
func Dial(ctx context.Context, network, address, export string, opts Options) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("nbd: dial %s %s: %w", network, address, err)
	}
	c, err := newClient(ctx, conn, export, opts)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("nbd: open export %q at %s: %w", export, address, err)
	}
	return c, nil
}

// newClient negotiates on an established connection and starts the reply
// reader. On error the caller closes conn.
func newClient(ctx context.Context, conn net.Conn, export string, opts Options) (*Client, error) {
	br := bufio.NewReaderSize(conn, 64<<10)
	release := interruptOnDone(ctx, conn.SetDeadline)
	info, err := negotiate(conn, br, export, opts.MetaContexts)
	release()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("negotiate: %w (%v)", ctx.Err(), err)
		}
		abortNegotiation(conn)
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	c := &Client{
		conn:       conn,
		size:       info.size,
		flags:      info.flags,
		contexts:   info.contexts,
		structured: info.structured,
		minBlock:   max(info.minBlock, 1),
		pending:    map[uint64]*request{},
		readerDone: make(chan struct{}),
	}
	c.maxRead = maxReadRequest
	if info.maxBlock != 0 && info.maxBlock < c.maxRead {
		c.maxRead = info.maxBlock
	}
	c.maxRead -= c.maxRead % c.minBlock
	go c.readLoop(br)
	return c, nil
}

// Size is the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// ContextID returns the id the server gave a metadata context, and
// whether it was granted at all.
func (c *Client) ContextID(name string) (uint32, bool) {
	id, ok := c.contexts[name]
	return id, ok
}

// CanMultiConn says whether the server allows several connections to the
// export to be used together (NBD_FLAG_CAN_MULTI_CONN). Several
// connections can read faster than one; QEMU sets it for read-only exports.
func (c *Client) CanMultiConn() bool { return c.flags&tfCanMultiConn != 0 }

// grantedContexts lists the granted metadata contexts for messages.
func (c *Client) grantedContexts() string {
	if len(c.contexts) == 0 {
		return "none"
	}
	names := make([]string, 0, len(c.contexts))
	for n := range c.contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Close sends NBD_CMD_DISC, gives requests still in flight up to two
// seconds to finish, and closes the connection. Requests started after
// Close fail with ErrClosed. QEMU 7.2 hangs up on NBD_CMD_DISC without
// answering what is in flight, so let requests finish before closing.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.readerDone
		return nil
	}
	c.closed = true
	alive := c.err == nil
	if alive {
		c.err = ErrClosed
	}
	busy := len(c.pending) > 0
	c.cookie++
	cookie := c.cookie
	c.mu.Unlock()

	var err error
	if alive {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		var hdr [requestSize]byte
		putRequest(&hdr, cmdDisc, cookie, 0, 0)
		if werr := c.write(ctx, hdr[:]); werr != nil {
			err = fmt.Errorf("nbd: send disconnect: %w", werr)
		} else if busy {
			// The server answers what it already has, then hangs up.
			select {
			case <-c.readerDone:
			case <-ctx.Done():
			}
		}
		cancel()
	}
	c.conn.Close()
	<-c.readerDone
	return err
}

// teardown makes the connection unusable: new requests fail with cause,
// and closing the socket makes the reply reader fail everything pending.
func (c *Client) teardown(cause error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = cause
	}
	c.mu.Unlock()
	c.conn.Close()
}

// interruptOnDone makes I/O on a connection fail as soon as ctx is done,
// by moving the deadline set with setDeadline into the past. Call the
// returned function when the I/O is over: it clears that deadline again.
func interruptOnDone(ctx context.Context, setDeadline func(time.Time) error) (release func()) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = setDeadline(time.Unix(1, 0)) // long past: blocked I/O fails now
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
			_ = setDeadline(time.Time{})
		}
	}
}
