package s3test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Fault is what the flaky proxy does to one request.
type Fault int

const (
	// Pass forwards the request.
	Pass Fault = iota
	// Unavailable answers 503 ServiceUnavailable without forwarding.
	Unavailable
	// SlowDown answers 503 SlowDown (S3's throttling) without forwarding.
	SlowDown
	// Throttled answers 429 TooManyRequests without forwarding.
	Throttled
	// Internal answers 500 InternalError without forwarding.
	Internal
	// Forbidden answers 403 AccessDenied without forwarding: a permanent
	// error that must not be retried.
	Forbidden
	// Drop closes the connection without an answer and without
	// forwarding: a reset mid-request.
	Drop
	// DropAfter forwards the request, so it takes effect, then closes the
	// connection instead of answering: the write landed, its answer was
	// lost.
	DropAfter
)

// FlakyProxy sits between a client and the S3 server and applies queued
// faults to the next requests, one fault per request in order; requests
// beyond the queue pass. It keeps the client's Host header, so signatures
// made for the proxy's address still verify.
type FlakyProxy struct {
	// Endpoint is the proxy's base URL, to give to the client.
	Endpoint string

	upstream *url.URL
	srv      *httptest.Server
	mu       sync.Mutex
	queue    []Fault
	requests atomic.Int64
	faulted  atomic.Int64
}

// NewFlakyProxy starts a proxy in front of endpoint, closed when the test
// ends.
func NewFlakyProxy(t testing.TB, endpoint string) *FlakyProxy {
	t.Helper()
	up, err := url.Parse(endpoint)
	if err != nil {
		t.Fatalf("flaky proxy: bad upstream %q: %v", endpoint, err)
	}
	p := &FlakyProxy{upstream: up}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.Endpoint = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// Next queues faults for the next requests.
func (p *FlakyProxy) Next(faults ...Fault) {
	p.mu.Lock()
	p.queue = append(p.queue, faults...)
	p.mu.Unlock()
}

// Fail queues the same fault for the next n requests.
func (p *FlakyProxy) Fail(n int, f Fault) {
	for range n {
		p.Next(f)
	}
}

// Requests is the number of requests the proxy received.
func (p *FlakyProxy) Requests() int64 { return p.requests.Load() }

// Faulted is the number of requests that got a fault.
func (p *FlakyProxy) Faulted() int64 { return p.faulted.Load() }

// Pending is the number of queued faults not yet applied.
func (p *FlakyProxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

func (p *FlakyProxy) next() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return Pass
	}
	f := p.queue[0]
	p.queue = p.queue[1:]
	return f
}

func (p *FlakyProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	f := p.next()
	if f != Pass {
		p.faulted.Add(1)
	}
	switch f {
	case Unavailable:
		s3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable")
	case SlowDown:
		s3Error(w, r, http.StatusServiceUnavailable, "SlowDown")
	case Throttled:
		s3Error(w, r, http.StatusTooManyRequests, "TooManyRequests")
	case Internal:
		s3Error(w, r, http.StatusInternalServerError, "InternalError")
	case Forbidden:
		s3Error(w, r, http.StatusForbidden, "AccessDenied")
	case Drop:
		hangUp(w)
	case DropAfter:
		if resp, err := p.forward(r); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		hangUp(w)
	default:
		resp, err := p.forward(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}
}

// forward sends r to the upstream server unchanged but for the address.
func (p *FlakyProxy) forward(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.upstream.Scheme
	out.URL.Host = p.upstream.Host
	out.Host = r.Host // signed by the client
	return http.DefaultTransport.RoundTrip(out)
}

// s3Error answers like an S3 server does.
func s3Error(w http.ResponseWriter, r *http.Request, status int, code string) {
	// Drain the body so the client sees the answer, not a reset.
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<Error><Code>%s</Code><Message>injected by the flaky proxy</Message><RequestId>flaky</RequestId></Error>`, code)
	}
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("flaky proxy: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}
