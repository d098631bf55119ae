package nbd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dialFake dials a fake server and closes the client when the test ends.
func dialFake(t *testing.T, s *fakeServer, opts Options) *Client {
	t.Helper()
	c, err := Dial(testContext(t), "unix", s.listen(t), s.export, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testContext ends with the test, and after 10 s at most so that a
// hanging test fails instead of stalling the suite.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialNegotiatesContexts(t *testing.T) {
	s := &fakeServer{
		export: "disk0",
		data:   testData(1 << 20),
		// Ids a client must read from the replies, not assume.
		contexts: map[string]uint32{ContextBaseAllocation: 7, DirtyBitmapContext("b0"): 42},
	}
	c := dialFake(t, s, Options{MetaContexts: []string{ContextBaseAllocation, DirtyBitmapContext("b0"), DirtyBitmapContext("gone")}})
	if c.Size() != 1<<20 {
		t.Errorf("Size = %d, want %d", c.Size(), 1<<20)
	}
	if id, ok := c.ContextID(ContextBaseAllocation); !ok || id != 7 {
		t.Errorf("ContextID(base:allocation) = %d, %v; want 7, true", id, ok)
	}
	if id, ok := c.ContextID("qemu:dirty-bitmap:b0"); !ok || id != 42 {
		t.Errorf("ContextID(qemu:dirty-bitmap:b0) = %d, %v; want 42, true", id, ok)
	}
	if _, ok := c.ContextID("qemu:dirty-bitmap:gone"); ok {
		t.Error("a context the server does not offer was granted")
	}
	if !c.CanMultiConn() {
		t.Error("CanMultiConn = false, want true")
	}
	_, err := c.BlockStatus(testContext(t), DirtyBitmapContext("gone"), 0, 4096)
	if !errors.Is(err, ErrNoContext) || !strings.Contains(err.Error(), "qemu:dirty-bitmap:b0") {
		t.Errorf("BlockStatus of an ungranted context: %v, want ErrNoContext listing the granted ones", err)
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		name   string
		server *fakeServer
		export string
		opts   Options
		is     error
		msg    string
	}{
		{
			name:   "unknown export",
			server: &fakeServer{export: "disk0", data: make([]byte, 4096)},
			export: "disk1", is: ErrUnknownExport, msg: `"disk1"`,
		},
		{
			name:   "unknown export with contexts",
			server: &fakeServer{export: "disk0", data: make([]byte, 4096), contexts: map[string]uint32{ContextBaseAllocation: 1}},
			export: "disk1", opts: Options{MetaContexts: []string{ContextBaseAllocation}},
			is: ErrUnknownExport, msg: "export 'disk1' not present",
		},
		{
			name:   "TLS required",
			server: &fakeServer{export: "disk0", data: make([]byte, 4096), tlsRequired: true},
			export: "disk0", is: ErrTLSRequired, msg: "TLS is required",
		},
		{
			name:   "contexts without structured replies",
			server: &fakeServer{export: "disk0", data: make([]byte, 4096), noStructured: true},
			export: "disk0", opts: Options{MetaContexts: []string{ContextBaseAllocation}},
			msg: "structured replies",
		},
		{
			name:   "unknown export, old server",
			server: &fakeServer{export: "disk0", data: make([]byte, 4096), noGo: true},
			export: "disk1", is: ErrUnknownExport, msg: "hung up",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(testContext(t), "unix", tt.server.listen(t), tt.export, tt.opts)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %q", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// TestDialOldServer: without NBD_OPT_GO the client opens the export with
// NBD_OPT_EXPORT_NAME, and without structured replies it reads through
// simple replies.
func TestDialOldServer(t *testing.T) {
	data := testData(64 << 10)
	s := &fakeServer{export: "", data: data, noGo: true, noStructured: true}
	c := dialFake(t, s, Options{})
	if c.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", c.Size(), len(data))
	}
	p := make([]byte, 10000)
	if err := c.ReadAt(testContext(t), p, 1234); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, data[1234:1234+len(p)]) {
		t.Error("read returned the wrong bytes")
	}
	if _, err := c.BlockStatus(testContext(t), ContextBaseAllocation, 0, 512); !errors.Is(err, ErrNoContext) {
		t.Errorf("BlockStatus without structured replies: %v, want ErrNoContext", err)
	}
}

// rawServer accepts one connection and hands it to serve.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "raw.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return sock
}

func TestDialNotNBD(t *testing.T) {
	sock := rawServer(t, func(c net.Conn) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
		c.Read(make([]byte, 100))
	})
	_, err := Dial(testContext(t), "unix", sock, "", Options{})
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "not an NBD server") {
		t.Errorf("Dial to a non-NBD server: %v", err)
	}
}

func TestDialServerHangsUp(t *testing.T) {
	sock := rawServer(t, func(c net.Conn) { c.Write([]byte("NBDMAG")) })
	_, err := Dial(testContext(t), "unix", sock, "", Options{})
	if err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Errorf("Dial to a server that hangs up: %v", err)
	}
}

// TestDialContextStalledServer: a server that accepts but never speaks
// must not hang Dial beyond its context.
func TestDialContextStalledServer(t *testing.T) {
	release := make(chan struct{})
	sock := rawServer(t, func(c net.Conn) { <-release })
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, "unix", sock, "", Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to a silent server: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Dial took %v after its context ended", d)
	}
}

func TestDialNoServer(t *testing.T) {
	_, err := Dial(testContext(t), "unix", filepath.Join(shortTempDir(t), "none.sock"), "", Options{})
	if err == nil || !strings.Contains(err.Error(), "dial unix") {
		t.Errorf("Dial without a server: %v", err)
	}
}

func TestCloseSendsDisconnect(t *testing.T) {
	s := &fakeServer{export: "d", data: make([]byte, 4096)}
	c, err := Dial(testContext(t), "unix", s.listen(t), "d", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		s.mu.Lock()
		discs := s.discs
		s.mu.Unlock()
		if discs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server saw %d NBD_CMD_DISC, want 1", discs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.ReadAt(testContext(t), make([]byte, 512), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}
}

// TestCloseLetsRequestsFinish: requests in flight when Close is called
// still get their replies; the server answers them before it reads
// NBD_CMD_DISC.
func TestCloseLetsRequestsFinish(t *testing.T) {
	data := testData(64 << 10)
	s := &fakeServer{export: "d", data: data}
	s.handle = func(sc *serverConn, req fakeRequest) bool {
		time.Sleep(20 * time.Millisecond)
		return false
	}
	c, err := Dial(testContext(t), "unix", s.listen(t), "d", Options{})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			p := make([]byte, 4096)
			err := c.ReadAt(testContext(t), p, int64(i)*4096)
			if err == nil && !bytes.Equal(p, data[i*4096:(i+1)*4096]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		}()
	}
	// Close while most reads are still unanswered.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		pending := len(c.pending)
		c.mu.Unlock()
		if pending >= 2 {
			break
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("read in flight during Close: %v", err)
		}
	}
}
