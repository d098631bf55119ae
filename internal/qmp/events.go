package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Event is an asynchronous message from QEMU, such as
// {"event":"BLOCK_JOB_CANCELLED","data":{"device":"fleece-job0",...}}.
type Event struct {
	Name string
	// Data is the event's data member, unparsed (empty when there is none).
	Data json.RawMessage
	// Timestamp is when QEMU emitted the event (host clock).
	Timestamp time.Time
}

// DecodeData unmarshals the event's data into v.
func (e Event) DecodeData(v any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("decode data of QMP event %s: the event has none", e.Name)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode data of QMP event %s: %w", e.Name, err)
	}
	return nil
}

// eventOf converts a wire message that is an event.
func eventOf(m *message) Event {
	e := Event{Name: m.Event, Data: m.Data}
	if ts := m.Timestamp; ts != nil && ts.Seconds >= 0 {
		e.Timestamp = time.Unix(ts.Seconds, ts.Microseconds*int64(time.Microsecond))
	}
	return e
}

// MatchData returns a match function for Subscribe that accepts events
// whose data has the string member key equal to value, e.g.
// MatchData("device", "fleece-job0") for block job events or
// MatchData("id", "exp0") for BLOCK_EXPORT_DELETED.
func MatchData(key, value string) func(Event) bool {
	return func(e Event) bool {
		var data map[string]json.RawMessage
		if json.Unmarshal(e.Data, &data) != nil {
			return false
		}
		var s string
		return json.Unmarshal(data[key], &s) == nil && s == value
	}
}

// Waiter receives the events of one subscription, in the order QEMU sent
// them. Events are buffered without bound until Wait takes them, so Close
// a Waiter when done with it.
type Waiter struct {
	c     *Client
	name  string
	match func(Event) bool

	mu     sync.Mutex
	queue  []Event
	closed bool
	ready  chan struct{} // holds a token while queue may be non-empty
}

// Subscribe starts buffering the events called name ("" for every event)
// for which match returns true (nil matches all). Subscribe before running
// the command that causes the event: QEMU may send the event before the
// command's reply, and events from before Subscribe are not kept.
//
// match runs on the goroutine that reads the socket: it must be quick and
// must not call the Client.
func (c *Client) Subscribe(name string, match func(Event) bool) *Waiter {
	w := &Waiter{c: c, name: name, match: match, ready: make(chan struct{}, 1)}
	c.mu.Lock()
	c.waiters[w] = struct{}{}
	c.mu.Unlock()
	return w
}

// Wait returns the next buffered event of the subscription, waiting for
// one until ctx ends or the connection ends. Events that arrived before
// the connection ended are still returned; after them the error wraps
// ErrClosed.
func (w *Waiter) Wait(ctx context.Context) (Event, error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			e := w.queue[0]
			w.queue[0] = Event{}
			w.queue = w.queue[1:]
			w.mu.Unlock()
			return e, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return Event{}, fmt.Errorf("wait for QMP event %s: %w", w.label(), errWaiterClosed)
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("wait for QMP event %s: %w", w.label(), ctx.Err())
		case <-w.c.done:
			w.mu.Lock()
			empty := len(w.queue) == 0
			w.mu.Unlock()
			if empty {
				return Event{}, fmt.Errorf("wait for QMP event %s: %w", w.label(), w.c.closedErr())
			}
		}
	}
}

// errWaiterClosed is returned by Wait after Close.
var errWaiterClosed = errors.New("the subscription was closed")

// label names the subscription in errors.
func (w *Waiter) label() string {
	if w.name == "" {
		return "(any)"
	}
	return w.name
}

// Close ends the subscription and drops its buffered events.
func (w *Waiter) Close() {
	w.c.mu.Lock()
	delete(w.c.waiters, w)
	w.c.mu.Unlock()
	w.mu.Lock()
	w.closed = true
	w.queue = nil
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}: // wake a Wait in progress
	default:
	}
}

// push buffers an event and wakes Wait.
func (w *Waiter) push(e Event) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// WaitEvent waits for the next event called name that match accepts. It
// only sees events that arrive after it is called: to wait for the effect
// of a command, use Subscribe before running the command instead.
func (c *Client) WaitEvent(ctx context.Context, name string, match func(Event) bool) (Event, error) {
	w := c.Subscribe(name, match)
	defer w.Close()
	return w.Wait(ctx)
}

// dispatchEvent hands an event to every subscription that wants it. The
// match functions run without the client's lock held.
func (c *Client) dispatchEvent(e Event) {
	c.mu.Lock()
	ws := make([]*Waiter, 0, len(c.waiters))
	for w := range c.waiters {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		if (w.name == "" || w.name == e.Name) && (w.match == nil || w.match(e)) {
			w.push(e)
		}
	}
}
