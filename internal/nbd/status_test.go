package nbd

import (
	"errors"
	"math"
	"reflect"
	"testing"
)

// expectedExtents clips the fake server's view of data to [off, off+n).
func expectedExtents(data []byte, off, n int64) []Extent {
	var out []Extent
	for _, r := range zeroRuns(data, 0) {
		s, e := max(int64(r.off), off), min(int64(r.off+r.len), off+n)
		if e > s {
			out = appendExtent(out, Extent{Off: s, Len: e - s, Flags: r.flags})
		}
	}
	return out
}

// TestBlockStatusPrefixReplies: the server answers each request with only
// a few extents, the last running past the request, and sends a second
// context's chunk too; the client loops and clips until the range is
// covered exactly.
func TestBlockStatusPrefixReplies(t *testing.T) {
	data := testData(1 << 20)
	s := &fakeServer{
		export:     "d",
		data:       data,
		contexts:   map[string]uint32{ContextBaseAllocation: 7, DirtyBitmapContext("b"): 42},
		maxExtents: 3,
		overshoot:  true,
	}
	c := dialFake(t, s, Options{MetaContexts: []string{DirtyBitmapContext("b"), ContextBaseAllocation}})
	for _, r := range []struct{ off, n int64 }{{0, 1 << 20}, {1000, 300000}, {4096, 4096}, {1<<20 - 1, 1}} {
		got, err := c.BlockStatus(testContext(t), ContextBaseAllocation, r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		if want := expectedExtents(data, r.off, r.n); !reflect.DeepEqual(got, want) {
			t.Errorf("BlockStatus(%d, %d) =\n%v, want\n%v", r.off, r.n, got, want)
		}
	}
	if got, err := c.BlockStatus(testContext(t), ContextBaseAllocation, 5, 0); err != nil || len(got) != 0 {
		t.Errorf("empty BlockStatus = %v, %v", got, err)
	}
}

// TestBlockStatusHugeExport: lengths are 32 bits on the wire, so a 10 GiB
// export takes several requests.
func TestBlockStatusHugeExport(t *testing.T) {
	const gib = 1 << 30
	s := &fakeServer{
		export:   "d",
		size:     10 * gib,
		contexts: map[string]uint32{DirtyBitmapContext("b"): 3},
		// Odd GiBs are dirty; one extent per GiB, split at GiB boundaries.
		status: func(_ string, off uint64, length uint32) []descriptor {
			var ds []descriptor
			for end := off + uint64(length); off < end; {
				next := min((off/gib+1)*gib, end)
				ds = append(ds, descriptor{uint32(next - off), uint32(off/gib) % 2})
				off = next
			}
			return ds
		},
	}
	c := dialFake(t, s, Options{MetaContexts: []string{DirtyBitmapContext("b")}})
	got, err := c.DirtyExtents(testContext(t), DirtyBitmapContext("b"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{1 * gib, gib}, {3 * gib, gib}, {5 * gib, gib}, {7 * gib, gib}, {9 * gib, gib}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DirtyExtents = %v, want %v", got, want)
	}
	reqs := s.received()
	if len(reqs) < 3 {
		t.Errorf("%d requests for 10 GiB, want at least 3", len(reqs))
	}
	for _, r := range reqs {
		if uint64(r.length) > math.MaxUint32 || r.length == 0 {
			t.Errorf("request length %d", r.length)
		}
	}
}

func TestAllocatedExtents(t *testing.T) {
	// 4 KiB each: data, hole+zero, data, zero (allocated), hole only
	// (unknown contents), data.
	flags := []uint32{0, StateHole | StateZero, 0, StateZero, StateHole, 0}
	s := &fakeServer{
		export:   "d",
		size:     uint64(len(flags)) * 4096,
		contexts: map[string]uint32{ContextBaseAllocation: 0},
		status: func(_ string, off uint64, length uint32) []descriptor {
			var ds []descriptor
			for o := off; o < off+uint64(length); o += 4096 {
				ds = append(ds, descriptor{4096, flags[o/4096]})
			}
			return ds
		},
	}
	c := dialFake(t, s, Options{MetaContexts: []string{ContextBaseAllocation}})
	got, err := c.AllocatedExtents(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Allocation{
		Allocated: []Range{{0, 4096}, {8192, 8192}, {20480, 4096}},
		Zero:      []Range{{4096, 4096}, {12288, 4096}},
		Data:      []Range{{0, 4096}, {8192, 4096}, {16384, 8192}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AllocatedExtents =\n%+v, want\n%+v", got, want)
	}
}

// TestBlockStatusMalformed: replies that cannot be right fail the call
// with ErrProtocol instead of looping or inventing extents.
func TestBlockStatusMalformed(t *testing.T) {
	tests := []struct {
		name   string
		status func(ctx string, off uint64, length uint32) []descriptor
		other  bool // answer only for the other context
		off    int64
	}{
		{name: "zero-length extent", status: func(string, uint64, uint32) []descriptor {
			return []descriptor{{0, 0}, {512, 0}}
		}},
		{name: "no progress", off: 700, status: func(string, uint64, uint32) []descriptor {
			return []descriptor{{100, 0}}
		}},
		{name: "wrong context", other: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fakeServer{
				export: "d", data: make([]byte, 64<<10), blockSize: [2]uint32{512, 1 << 20},
				contexts: map[string]uint32{ContextBaseAllocation: 1, DirtyBitmapContext("b"): 2},
				status:   tt.status,
			}
			opts := Options{MetaContexts: []string{ContextBaseAllocation, DirtyBitmapContext("b")}}
			if tt.other {
				s.handle = func(sc *serverConn, req fakeRequest) bool {
					p := be.AppendUint32(nil, 2)
					p = be.AppendUint32(p, req.length)
					p = be.AppendUint32(p, 0)
					sc.chunk(req.cookie, replyFlagDone, chunkBlockStatus, p)
					return true
				}
			}
			c := dialFake(t, s, opts)
			_, err := c.BlockStatus(testContext(t), ContextBaseAllocation, tt.off, 4096)
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("BlockStatus: %v, want ErrProtocol", err)
			}
		})
	}
}
