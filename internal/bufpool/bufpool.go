// Package bufpool pools byte buffers of one size. Buffers travel as
// *[]byte so that putting one back allocates nothing.
package bufpool

import "sync"

// Pool hands out buffers of a fixed capacity.
type Pool struct {
	p    sync.Pool
	size int
}

// New makes a pool of buffers with capacity size.
func New(size int) *Pool {
	p := &Pool{size: size}
	p.p.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

// Get returns a buffer of length and capacity size.
func (p *Pool) Get() *[]byte {
	b := p.p.Get().(*[]byte)
	*b = (*b)[:p.size]
	return b
}

// Put returns a buffer. Buffers of another capacity (one that grew) are
// dropped.
func (p *Pool) Put(b *[]byte) {
	if b == nil || cap(*b) != p.size {
		return
	}
	p.p.Put(b)
}
