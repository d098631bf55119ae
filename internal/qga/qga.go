// Package qga talks to the QEMU guest agent over its host-side socket, for
// the one job drctl needs from inside the guest: freezing and thawing the
// guest's file systems around a snapshot (application consistency).
package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"time"
)

// Client is a connection to a guest agent. Not safe for concurrent use.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the agent's socket and synchronises the stream: the
// agent may hold a half-read command or a stale reply from an earlier
// client, and guest-sync-delimited is the protocol's way to resume cleanly.
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect to guest agent socket %s: %w", socket, err)
	}
	c := &Client{conn: conn, r: bufio.NewReader(conn)}
	if err := c.sync(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) deadline(ctx context.Context) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	_ = c.conn.SetDeadline(dl)
}

func (c *Client) sync(ctx context.Context) error {
	c.deadline(ctx)
	id := rand.Int64N(1 << 40)
	// A 0xFF byte first makes the agent drop any partial command.
	req, _ := json.Marshal(map[string]any{"execute": "guest-sync-delimited", "arguments": map[string]any{"id": id}})
	if _, err := c.conn.Write(append([]byte{0xFF}, append(req, '\n')...)); err != nil {
		return fmt.Errorf("guest agent: sync: %w", err)
	}
	// The reply is preceded by 0xFF; anything before it is stale.
	if _, err := c.r.ReadBytes(0xFF); err != nil {
		return fmt.Errorf("guest agent: sync: no answer: %w (is qemu-guest-agent running in the guest?)", err)
	}
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("guest agent: sync: %w", err)
		}
		var resp struct {
			Return int64 `json:"return"`
		}
		if json.Unmarshal(bytes.TrimSpace(line), &resp) == nil && resp.Return == id {
			return nil
		}
	}
}

// Error is an error reported by the agent.
type Error struct{ Class, Desc string }

func (e *Error) Error() string { return "guest agent: " + e.Class + ": " + e.Desc }

func (c *Client) execute(ctx context.Context, cmd string, result any) error {
	c.deadline(ctx)
	req, _ := json.Marshal(map[string]string{"execute": cmd})
	if _, err := c.conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("guest agent: %s: %w", cmd, err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("guest agent: %s: %w", cmd, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("guest agent: %s: bad reply %q: %w", cmd, line, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("%s: %w", cmd, resp.Error)
	}
	if result != nil && resp.Return != nil {
		return json.Unmarshal(resp.Return, result)
	}
	return nil
}

// Freeze freezes the guest's file systems and returns how many were
// frozen. The caller must Thaw, also on error paths.
func (c *Client) Freeze(ctx context.Context) (int, error) {
	var n int
	err := c.execute(ctx, "guest-fsfreeze-freeze", &n)
	return n, err
}

// Thaw thaws the guest's file systems.
func (c *Client) Thaw(ctx context.Context) (int, error) {
	var n int
	err := c.execute(ctx, "guest-fsfreeze-thaw", &n)
	return n, err
}
