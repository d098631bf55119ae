package targets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Op names one Target method in statistics and fault rules.
type Op string

// The operations of a Target.
const (
	OpGet         Op = "get"
	OpGetRange    Op = "get-range"
	OpStat        Op = "stat"
	OpPut         Op = "put"
	OpPutIfAbsent Op = "put-if-absent"
	OpPutIfMatch  Op = "put-if-match"
	OpList        Op = "list"
	OpDelete      Op = "delete"
)

// Ops lists every operation in a stable order, for printing.
func Ops() []Op {
	return []Op{OpGet, OpGetRange, OpStat, OpPut, OpPutIfAbsent, OpPutIfMatch, OpList, OpDelete}
}

// opIndex maps an op to its slot in Counting.ops; the order is that of Ops.
func opIndex(op Op) int {
	switch op {
	case OpGet:
		return 0
	case OpGetRange:
		return 1
	case OpStat:
		return 2
	case OpPut:
		return 3
	case OpPutIfAbsent:
		return 4
	case OpPutIfMatch:
		return 5
	case OpList:
		return 6
	case OpDelete:
		return 7
	}
	panic("targets: unknown op " + string(op))
}

// OpStats are the counters of one operation.
type OpStats struct {
	// Calls is the number of method calls.
	Calls int64 `json:"calls"`
	// Requests is the number of requests sent to the storage service: list
	// pages, multipart parts and retries included when the backend reports
	// them (the S3 targets do), else one per call.
	Requests int64 `json:"requests"`
	// Errors counts calls that failed. The answers "not found", "exists"
	// and "precondition failed" are outcomes, not failures: they are in
	// NotFound and Conflicts instead.
	Errors    int64 `json:"errors"`
	NotFound  int64 `json:"not_found"`
	Conflicts int64 `json:"conflicts"`
	// BytesSent is the object payload of put calls (attempted), and
	// BytesReceived that of successful get calls; protocol overhead is not
	// included.
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// Duration is the time spent in calls, summed.
	Duration time.Duration `json:"duration_ns"`
}

func (s *OpStats) add(o OpStats) {
	s.Calls += o.Calls
	s.Requests += o.Requests
	s.Errors += o.Errors
	s.NotFound += o.NotFound
	s.Conflicts += o.Conflicts
	s.BytesSent += o.BytesSent
	s.BytesReceived += o.BytesReceived
	s.Duration += o.Duration
}

// Stats is a point-in-time copy of a Counting wrapper's counters, ready to
// print (String) or to encode as JSON.
type Stats struct {
	Target string         `json:"target"`
	Ops    map[Op]OpStats `json:"ops"`
	Total  OpStats        `json:"total"`
}

// String renders a table with one line per operation that was used.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", s.Target)
	fmt.Fprintf(&b, "  %-14s %8s %9s %7s %9s %9s %12s %12s %10s\n",
		"op", "calls", "requests", "errors", "notfound", "conflicts", "sent", "received", "time")
	line := func(name string, o OpStats) {
		fmt.Fprintf(&b, "  %-14s %8d %9d %7d %9d %9d %12d %12d %10s\n", name, o.Calls, o.Requests,
			o.Errors, o.NotFound, o.Conflicts, o.BytesSent, o.BytesReceived, o.Duration.Round(time.Millisecond))
	}
	for _, op := range Ops() {
		if o := s.Ops[op]; o.Calls > 0 {
			line(string(op), o)
		}
	}
	line("total", s.Total)
	return b.String()
}

// opCounters is the live, atomic form of OpStats.
type opCounters struct {
	calls, requests, errors, notFound, conflicts atomic.Int64
	sent, received, nanos                        atomic.Int64
}

// Counting is a Target that counts calls, requests, bytes and errors per
// operation. It is meant to be the outermost wrapper,
// Counting(Retry(backend)), so that a call counts once however often it
// was retried while the backend still reports every request it sent.
type Counting struct {
	next Target
	ops  [8]opCounters
}

// NewCounting wraps t.
func NewCounting(t Target) *Counting { return &Counting{next: t} }

// Unwrap returns the wrapped target.
func (c *Counting) Unwrap() Target { return c.next }

// String names the wrapped target.
func (c *Counting) String() string { return c.next.String() }

// Snapshot copies the counters. Counters of different operations are read
// one after the other, not as one atomic cut.
func (c *Counting) Snapshot() Stats {
	s := Stats{Target: c.next.String(), Ops: make(map[Op]OpStats)}
	for i, op := range Ops() {
		o := &c.ops[i]
		st := OpStats{
			Calls: o.calls.Load(), Requests: o.requests.Load(), Errors: o.errors.Load(),
			NotFound: o.notFound.Load(), Conflicts: o.conflicts.Load(),
			BytesSent: o.sent.Load(), BytesReceived: o.received.Load(),
			Duration: time.Duration(o.nanos.Load()),
		}
		s.Ops[op] = st
		s.Total.add(st)
	}
	return s
}

// begin starts accounting one call and returns the context to pass down and
// the function that finishes the accounting.
func (c *Counting) begin(ctx context.Context, op Op, sent int64) (context.Context, func(received int64, err error)) {
	o := &c.ops[opIndex(op)]
	start := time.Now()
	o.calls.Add(1)
	o.sent.Add(sent)
	ctx, rc := withRequestCounter(ctx)
	return ctx, func(received int64, err error) {
		o.requests.Add(max(1, rc.n.Load()))
		o.nanos.Add(int64(time.Since(start)))
		switch {
		case err == nil:
			o.received.Add(received)
		case errors.Is(err, ErrNotFound):
			o.notFound.Add(1)
		case errors.Is(err, ErrExists), errors.Is(err, ErrPrecondition):
			o.conflicts.Add(1)
		default:
			o.errors.Add(1)
		}
	}
}

func (c *Counting) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	ctx, done := c.begin(ctx, OpGet, 0)
	data, info, err := c.next.Get(ctx, key)
	done(int64(len(data)), err)
	return data, info, err
}

func (c *Counting) GetRange(ctx context.Context, key string, off, length int64) ([]byte, error) {
	ctx, done := c.begin(ctx, OpGetRange, 0)
	data, err := c.next.GetRange(ctx, key, off, length)
	done(int64(len(data)), err)
	return data, err
}

func (c *Counting) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	ctx, done := c.begin(ctx, OpStat, 0)
	info, err := c.next.Stat(ctx, key)
	done(0, err)
	return info, err
}

func (c *Counting) Put(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	ctx, done := c.begin(ctx, OpPut, int64(len(data)))
	info, err := c.next.Put(ctx, key, data)
	done(0, err)
	return info, err
}

func (c *Counting) PutIfAbsent(ctx context.Context, key string, data []byte) (ObjectInfo, error) {
	ctx, done := c.begin(ctx, OpPutIfAbsent, int64(len(data)))
	info, err := c.next.PutIfAbsent(ctx, key, data)
	done(0, err)
	return info, err
}

func (c *Counting) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (ObjectInfo, error) {
	ctx, done := c.begin(ctx, OpPutIfMatch, int64(len(data)))
	info, err := c.next.PutIfMatch(ctx, key, data, etag)
	done(0, err)
	return info, err
}

func (c *Counting) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	ctx, done := c.begin(ctx, OpList, 0)
	err := c.next.List(ctx, prefix, fn)
	done(0, err)
	return err
}

func (c *Counting) Delete(ctx context.Context, key string) error {
	ctx, done := c.begin(ctx, OpDelete, 0)
	err := c.next.Delete(ctx, key)
	done(0, err)
	return err
}
