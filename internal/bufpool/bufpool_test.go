package bufpool

import "testing"

func TestPoolReusesAndBounds(t *testing.T) {
	p := New(1024, 2)
	a, b, c := p.Get(), p.Get(), p.Get()
	if len(*a) != 1024 || cap(*a) != 1024 {
		t.Fatalf("len %d cap %d, want 1024", len(*a), cap(*a))
	}
	(*a)[0] = 42
	*a = (*a)[:10] // callers may shorten a buffer before putting it back
	p.Put(a)
	p.Put(b)
	p.Put(c) // beyond the idle limit: dropped
	if got := p.Get(); got != a || len(*got) != 1024 || (*got)[0] != 42 {
		t.Fatal("Get did not return the first idle buffer at full length")
	}
	if got := p.Get(); got != b {
		t.Fatal("Get did not return the second idle buffer")
	}
	if got := p.Get(); got == c {
		t.Fatal("a buffer beyond the idle limit was kept")
	}
	grown := make([]byte, 2048)
	p.Put(&grown) // another capacity: dropped
	if got := p.Get(); cap(*got) != 1024 {
		t.Fatalf("Get returned a buffer of capacity %d", cap(*got))
	}
}
