package nbd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
)

func TestReadAtStructuredWithHoles(t *testing.T) {
	data := testData(1 << 20)
	s := &fakeServer{export: "d", data: data}
	c := dialFake(t, s, Options{})
	for _, r := range []struct{ off, n int }{{0, 1 << 20}, {4096, 4096}, {5000, 10000}, {1<<20 - 1, 1}, {0, 0}} {
		p := bytes.Repeat([]byte{0xee}, r.n) // holes must overwrite this with zeros
		if err := c.ReadAt(testContext(t), p, int64(r.off)); err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", r.off, r.n, err)
		}
		if !bytes.Equal(p, data[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d, %d) returned the wrong bytes", r.off, r.n)
		}
	}
	if err := c.ReadAt(testContext(t), make([]byte, 2), 1<<20-1); err == nil || !bytes.Contains([]byte(err.Error()), []byte("outside the export")) {
		t.Errorf("read past the end: %v", err)
	}
}

// TestReadAtSplitsAndPipelines: a read larger than the server's maximum
// is split, and all parts are on the wire before any reply (the server
// answers only when it has them all, last first).
func TestReadAtSplitsAndPipelines(t *testing.T) {
	data := testData(5<<20 + 4096)
	s := &fakeServer{export: "d", data: data, blockSize: [2]uint32{1, 1 << 20}}
	holdUntil(s, 5)
	c := dialFake(t, s, Options{})
	p := make([]byte, len(data)-4096)
	if err := c.ReadAt(testContext(t), p, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, data[4096:]) {
		t.Error("split read returned the wrong bytes")
	}
	reqs := s.received()
	if len(reqs) != 5 {
		t.Errorf("server got %d requests, want 5", len(reqs))
	}
	for _, r := range reqs {
		if r.length > 1<<20 {
			t.Errorf("request of %d bytes exceeds the server's maximum", r.length)
		}
	}
}

// holdUntil makes the server collect n read requests before answering
// them, in reverse order.
func holdUntil(s *fakeServer, n int) {
	var held []fakeRequest
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		held = append(held, req)
		if len(held)%n == 0 {
			for i := len(held) - 1; i >= len(held)-n; i-- {
				s.serveDefault(sc, held[i])
			}
		}
		return true
	}
}

// TestReadAtConcurrent: requests from several goroutines are in flight
// together on one connection, and replies find their requests.
func TestReadAtConcurrent(t *testing.T) {
	data := testData(1 << 20)
	s := &fakeServer{export: "d", data: data}
	holdUntil(s, 8)
	c := dialFake(t, s, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := g * 100000
			p := make([]byte, 50000+g)
			if err := c.ReadAt(testContext(t), p, int64(off)); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(p, data[off:off+len(p)]) {
				errs <- fmt.Errorf("goroutine %d read the wrong bytes", g)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReadAtAlignsToMinimumBlock: with a minimum block size of 512 an
// unaligned read becomes an aligned request.
func TestReadAtAlignsToMinimumBlock(t *testing.T) {
	data := testData(64 << 10)
	s := &fakeServer{export: "d", data: data, blockSize: [2]uint32{512, 32 << 20}}
	c := dialFake(t, s, Options{})
	p := make([]byte, 1000)
	if err := c.ReadAt(testContext(t), p, 700); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, data[700:1700]) {
		t.Error("unaligned read returned the wrong bytes")
	}
	for _, r := range s.received() {
		if r.off%512 != 0 || r.length%512 != 0 {
			t.Errorf("request [%d, +%d) is not 512-byte aligned", r.off, r.length)
		}
	}
}

func TestReaderAt(t *testing.T) {
	data := testData(10000)
	s := &fakeServer{export: "d", data: data}
	c := dialFake(t, s, Options{})
	got, err := io.ReadAll(io.NewSectionReader(c.ReaderAt(testContext(t)), 0, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read %d bytes through ReaderAt, want the export's %d", len(got), len(data))
	}
}

// TestReadAtServerErrors: errors the server reports fail the request, and
// the connection goes on.
func TestReadAtServerErrors(t *testing.T) {
	data := testData(64 << 10)
	s := &fakeServer{export: "d", data: data}
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		switch req.off {
		case 4096: // data, then an error: the whole read fails
			sc.dataChunk(req.cookie, 0, req.off, data[req.off:req.off+512])
			sc.chunk(req.cookie, replyFlagDone, chunkError, errorPayload(5, "disk on fire"))
		case 8192:
			p := append(errorPayload(5, "bad sector"), be.AppendUint64(nil, 8192+1000)...)
			sc.chunk(req.cookie, replyFlagDone, chunkErrorOffset, p)
		case 12288:
			sc.chunk(req.cookie, replyFlagDone, chunkError, errorPayload(1234, ""))
		default:
			return false
		}
		return true
	}
	c := dialFake(t, s, Options{})
	tests := []struct {
		off    int64
		errno  syscall.Errno
		text   string
		offset int64
	}{
		{4096, syscall.EIO, "server error EIO: disk on fire", -1},
		{8192, syscall.EIO, "server error EIO at offset 9192: bad sector", 9192},
		{12288, 0, "server error errno 1234", -1},
	}
	for _, tt := range tests {
		err := c.ReadAt(testContext(t), make([]byte, 4096), tt.off)
		var se *Error
		if !errors.As(err, &se) || se.Offset != tt.offset {
			t.Errorf("read at %d: %v, want a server error at offset %d", tt.off, err, tt.offset)
			continue
		}
		if tt.errno != 0 && !errors.Is(err, tt.errno) {
			t.Errorf("read at %d: %v is not %v", tt.off, err, tt.errno)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(tt.text)) {
			t.Errorf("read at %d: %q does not contain %q", tt.off, err, tt.text)
		}
	}
	p := make([]byte, 4096)
	if err := c.ReadAt(testContext(t), p, 0); err != nil || !bytes.Equal(p, data[:4096]) {
		t.Errorf("read after server errors: %v", err)
	}
}
