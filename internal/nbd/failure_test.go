package nbd

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMalformedReadReplies: a reply that breaks the protocol fails its
// read with ErrProtocol; the connection survives if the reply stream is
// still in step, and is dropped if not.
func TestMalformedReadReplies(t *testing.T) {
	data := testData(64 << 10)
	tests := []struct {
		name    string
		reply   func(sc *serverConn, req fakeRequest)
		dropped bool
	}{
		{"data outside the read", func(sc *serverConn, req fakeRequest) {
			sc.dataChunk(req.cookie, replyFlagDone, req.off+1, data[:req.length])
		}, false},
		{"gap", func(sc *serverConn, req fakeRequest) {
			sc.dataChunk(req.cookie, replyFlagDone, req.off, data[:req.length-1])
		}, false},
		{"overlap", func(sc *serverConn, req fakeRequest) {
			sc.dataChunk(req.cookie, 0, req.off, data[:req.length/2+1])
			sc.dataChunk(req.cookie, replyFlagDone, req.off+uint64(req.length/2), data[:req.length/2])
		}, false},
		{"hole outside the read", func(sc *serverConn, req fakeRequest) {
			sc.holeChunk(req.cookie, replyFlagDone, req.off, req.length+1)
		}, false},
		{"block status for a read", func(sc *serverConn, req fakeRequest) {
			sc.chunk(req.cookie, replyFlagDone, chunkBlockStatus, make([]byte, 12))
		}, false},
		{"unknown chunk type", func(sc *serverConn, req fakeRequest) {
			sc.chunk(req.cookie, replyFlagDone, 77, []byte("hello"))
		}, false},
		{"error without error value", func(sc *serverConn, req fakeRequest) {
			sc.chunk(req.cookie, replyFlagDone, chunkError, errorPayload(0, "all is well"))
		}, false},
		{"error message longer than chunk", func(sc *serverConn, req fakeRequest) {
			sc.chunk(req.cookie, replyFlagDone, chunkError, errorPayload(5, "x")[:6])
		}, false},
		{"unknown cookie", func(sc *serverConn, req fakeRequest) {
			sc.dataChunk(req.cookie+1000, replyFlagDone, req.off, data[:req.length])
		}, true},
		{"bad magic", func(sc *serverConn, req fakeRequest) {
			sc.send([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		}, true},
		{"simple reply to a structured read", func(sc *serverConn, req fakeRequest) {
			sc.simple(req.cookie, 0, data[:req.length])
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fakeServer{export: "d", data: data}
			s.handle = func(sc *serverConn, req fakeRequest) bool {
				if req.off != 4096 {
					return false
				}
				tt.reply(sc, req)
				return true
			}
			c := dialFake(t, s, Options{})
			err := c.ReadAt(testContext(t), make([]byte, 4096), 4096)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadAt: %v, want ErrProtocol", err)
			}
			p := make([]byte, 512)
			err = c.ReadAt(testContext(t), p, 0)
			switch {
			case tt.dropped && (err == nil || !strings.Contains(err.Error(), "dropped the connection")):
				t.Errorf("read after a broken stream: %v, want the connection dropped", err)
			case !tt.dropped && err != nil:
				t.Errorf("read after a bad reply: %v", err)
			case !tt.dropped && !bytes.Equal(p, data[:512]):
				t.Error("read after a bad reply returned the wrong bytes")
			}
		})
	}
}

// TestCancelWaitingRead: a read the server does not answer returns when
// its context ends, the connection stays usable, and the late reply does
// not touch the caller's buffer.
func TestCancelWaitingRead(t *testing.T) {
	data := testData(64 << 10)
	s := &fakeServer{export: "d", data: data}
	release := make(chan struct{})
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		if req.off == 8192 {
			<-release
		}
		return false
	}
	c := dialFake(t, s, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := make([]byte, 4096)
	start := time.Now()
	err := c.ReadAt(ctx, p, 8192)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadAt: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled ReadAt took %v", d)
	}
	close(release) // the server now answers the abandoned read, then this one
	q := make([]byte, 4096)
	if err := c.ReadAt(testContext(t), q, 0); err != nil || !bytes.Equal(q, data[:4096]) {
		t.Fatalf("read after a cancelled one: %v", err)
	}
	if !bytes.Equal(p, make([]byte, 4096)) {
		t.Error("the late reply was written into the abandoned buffer")
	}
}

// TestCancelMidTransfer: a server stalled in the middle of sending data
// cannot hold a cancelled caller; the connection is given up instead.
func TestCancelMidTransfer(t *testing.T) {
	s := &fakeServer{export: "d", data: make([]byte, 1<<20)}
	stall := make(chan struct{})
	defer close(stall)
	sent := make(chan struct{})
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		b := chunkBytes(req.cookie, replyFlagDone, chunkOffsetData, dataPayload(req.off, make([]byte, req.length)))
		// Half a MiB is more than the socket buffers: when this returns,
		// the client is busy reading the chunk.
		sc.send(b[:len(b)/2])
		close(sent)
		<-stall
		return true
	}
	c := dialFake(t, s, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	go func() {
		<-sent
		cancelled = time.Now()
		cancel()
	}()
	err := c.ReadAt(ctx, make([]byte, 1<<20), 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt: %v, want context.Canceled", err)
	}
	if d := time.Since(cancelled); d > time.Second {
		t.Errorf("cancelled ReadAt took %v to return", d)
	}
	err = c.ReadAt(testContext(t), make([]byte, 512), 0)
	if err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("read after giving up on the connection: %v", err)
	}
}

// TestServerDies: when the server goes away every waiting request fails
// at once, and so does every later one.
func TestServerDies(t *testing.T) {
	s := &fakeServer{export: "d", data: make([]byte, 1<<20)}
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		if req.off == 0 {
			return false
		}
		time.Sleep(20 * time.Millisecond) // let the other reads queue up
		sc.Close()
		return true
	}
	c := dialFake(t, s, Options{})
	errs := make(chan error, 4)
	for i := range 4 {
		go func() { errs <- c.ReadAt(testContext(t), make([]byte, 4096), int64(i+1)*4096) }()
	}
	for range 4 {
		select {
		case err := <-errs:
			if err == nil || !strings.Contains(err.Error(), "connection to server lost") {
				t.Errorf("read when the server died: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reads hang after the server died")
		}
	}
	start := time.Now()
	if err := c.ReadAt(testContext(t), make([]byte, 4096), 0); err == nil {
		t.Error("read succeeded after the server died")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("read on a dead connection took %v", d)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close on a dead connection: %v", err)
	}
}
