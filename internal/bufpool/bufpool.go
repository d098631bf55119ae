// Package bufpool keeps byte buffers of one size for reuse. Buffers travel
// as *[]byte so that putting one back allocates nothing.
//
// It is a bounded free list, not a sync.Pool: a sync.Pool is emptied at
// every garbage collection, and drctl runs with a low GOGC, so multi-MiB
// buffers would be allocated, zeroed and faulted in again and again.
package bufpool

// Pool hands out buffers of a fixed capacity and keeps up to a fixed
// number of idle ones.
type Pool struct {
	free chan *[]byte
	size int
}

// New makes a pool of buffers with capacity size that keeps at most idle
// buffers between uses.
func New(size, idle int) *Pool {
	return &Pool{free: make(chan *[]byte, idle), size: size}
}

// Get returns a buffer of length and capacity size.
func (p *Pool) Get() *[]byte {
	select {
	case b := <-p.free:
		*b = (*b)[:p.size]
		return b
	default:
		b := make([]byte, p.size)
		return &b
	}
}

// Put returns a buffer. Buffers of another capacity (one that grew) and
// buffers beyond the idle limit are dropped.
func (p *Pool) Put(b *[]byte) {
	if b == nil || cap(*b) != p.size {
		return
	}
	select {
	case p.free <- b:
	default:
	}
}
