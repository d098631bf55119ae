package qmp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// qemuGreeting is what QEMU 7.2 sends first, CRLF included.
const qemuGreeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}` + "\r\n"

// fakeRequest is a command as the fake server received it.
type fakeRequest struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
	// HasArguments tells an absent "arguments" from an empty one.
	HasArguments bool `json:"-"`
}

// fakeQEMU is a scripted QMP server for one client: it greets, answers
// qmp_capabilities by itself and hands every other request to the test,
// which replies, sends events or drops the connection as it likes.
type fakeQEMU struct {
	t    *testing.T
	path string
	ln   net.Listener
	reqs chan fakeRequest // requests other than qmp_capabilities

	mu       sync.Mutex
	accepted net.Conn      // the client's connection, once accepted
	ready    chan struct{} // closed when accepted is set
}

// shortTempDir returns a fresh directory with a short path: unix socket
// paths are limited to about 100 bytes, and t.TempDir embeds the test name.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startFake listens on a fresh socket and serves one client with greeting.
func startFake(t *testing.T, greeting string) *fakeQEMU {
	t.Helper()
	f := &fakeQEMU{
		t:     t,
		path:  filepath.Join(shortTempDir(t), "qmp.sock"),
		reqs:  make(chan fakeRequest, 16),
		ready: make(chan struct{}),
	}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		if f.accepted != nil {
			f.accepted.Close()
		}
		f.mu.Unlock()
	})
	go f.serve(greeting)
	return f
}

// serve accepts one client and reads its requests.
func (f *fakeQEMU) serve(greeting string) {
	c, err := f.ln.Accept()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.accepted = c
	f.mu.Unlock()
	close(f.ready)
	if _, err := c.Write([]byte(greeting)); err != nil {
		return
	}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var r fakeRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			f.t.Errorf("fake QEMU: bad request %q: %v", sc.Text(), err)
			return
		}
		r.HasArguments = strings.Contains(sc.Text(), `"arguments"`)
		if r.Execute == "qmp_capabilities" {
			fmt.Fprintf(c, "{\"return\": {}, \"id\": %s}\r\n", r.ID)
			continue
		}
		f.reqs <- r
	}
}

// client returns the server side of the connection.
func (f *fakeQEMU) client() net.Conn {
	f.t.Helper()
	select {
	case <-f.ready:
	case <-time.After(5 * time.Second):
		f.t.Fatal("fake QEMU: no client connected")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// next returns the next request.
func (f *fakeQEMU) next() fakeRequest {
	f.t.Helper()
	select {
	case r := <-f.reqs:
		return r
	case <-time.After(5 * time.Second):
		f.t.Fatal("fake QEMU: no request within 5s")
		return fakeRequest{}
	}
}

// send writes one raw message line.
func (f *fakeQEMU) send(line string) {
	f.t.Helper()
	if _, err := f.client().Write([]byte(line + "\r\n")); err != nil {
		f.t.Fatalf("fake QEMU: send: %v", err)
	}
}

// reply answers request r with a return value given as JSON.
func (f *fakeQEMU) reply(r fakeRequest, ret string) {
	f.t.Helper()
	f.send(fmt.Sprintf(`{"return": %s, "id": %s}`, ret, r.ID))
}

// replyError answers request r with a QMP error.
func (f *fakeQEMU) replyError(r fakeRequest, class, desc string) {
	f.t.Helper()
	f.send(fmt.Sprintf(`{"id": %s, "error": {"class": %q, "desc": %q}}`, r.ID, class, desc))
}

// event sends an event with data given as JSON.
func (f *fakeQEMU) event(name, data string) {
	f.t.Helper()
	f.send(fmt.Sprintf(`{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": %q, "data": %s}`, name, data))
}

// drop closes the connection, as a dying QEMU does.
func (f *fakeQEMU) drop() {
	f.t.Helper()
	f.client().Close()
}
