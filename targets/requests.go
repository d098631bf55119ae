package targets

import (
	"context"
	"net/http"
	"sync/atomic"
)

// Request accounting across layers.
//
// A logical call such as List or a multipart Put turns into several
// requests to the storage service (one per page, one per part), and the
// retry layer may repeat them. Users pay per request, so Counting wants the
// real number. The layers in between should not need to know, so the count
// travels in the context: Counting puts a counter in ctx, and a backend
// calls CountRequest for each request it sends. HTTP backends get this for
// free by wrapping their transport with CountingTransport.

type requestCounterKey struct{}

// requestCounter counts the requests of one call. parent links to the
// counter of an enclosing Counting wrapper, so nested wrappers all see them.
type requestCounter struct {
	n      atomic.Int64
	parent *requestCounter
}

// withRequestCounter returns a ctx whose requests are added to a new
// counter, and that counter.
func withRequestCounter(ctx context.Context) (context.Context, *requestCounter) {
	parent, _ := ctx.Value(requestCounterKey{}).(*requestCounter)
	c := &requestCounter{parent: parent}
	return context.WithValue(ctx, requestCounterKey{}, c), c
}

// CountRequest records that one request was sent to the storage service on
// behalf of the call that ctx belongs to. It does nothing when no Counting
// wrapper is listening.
func CountRequest(ctx context.Context) {
	c, _ := ctx.Value(requestCounterKey{}).(*requestCounter)
	for ; c != nil; c = c.parent {
		c.n.Add(1)
	}
}

// CountingTransport wraps an HTTP transport so that every request it sends
// is reported with CountRequest (its context is the caller's).
func CountingTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return countingTransport{rt}
}

type countingTransport struct{ next http.RoundTripper }

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	CountRequest(req.Context())
	return c.next.RoundTrip(req)
}
