// Package syncbuf has the buffer that collects a child process's output
// (often stdout and stderr at once) while tests and diagnostics read it.
package syncbuf

import (
	"bytes"
	"sync"
)

// DefaultMax is what a Buffer keeps unless told otherwise: enough to
// diagnose a failure, and bounded should the process print in a loop.
const DefaultMax = 1 << 20

// Buffer is a bytes.Buffer safe for concurrent writers and readers that
// keeps the first Max bytes written (DefaultMax when 0) and drops the rest.
// The zero value is ready to use.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps what fits and reports all of p written, so that a process
// is never stopped by a full buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.Max
	if limit <= 0 {
		limit = DefaultMax
	}
	if room := limit - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns what was kept.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
