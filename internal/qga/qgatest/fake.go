// Package qgatest is a fake QEMU guest agent for tests of code that
// freezes guests: it speaks the protocol on a unix socket and records the
// commands it got.
package qgatest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"sync"
	"testing"
)

// Agent is a fake guest agent.
type Agent struct {
	Socket     string
	FailFreeze bool
	Silent     bool // never answer (a hung agent)

	mu   sync.Mutex
	cmds []string
}

// Start serves f on a new socket until the test ends.
func Start(t testing.TB, f *Agent) *Agent {
	t.Helper()
	f.Socket = filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *Agent) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		line = bytes.TrimLeft(line, "\xff")
		var req struct {
			Execute   string `json:"execute"`
			Arguments struct {
				ID int64 `json:"id"`
			} `json:"arguments"`
		}
		if json.Unmarshal(line, &req) != nil {
			continue
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, req.Execute)
		f.mu.Unlock()
		if f.Silent {
			continue
		}
		var reply any
		switch req.Execute {
		case "guest-sync-delimited":
			conn.Write([]byte("stale garbage\xff"))
			reply = map[string]any{"return": req.Arguments.ID}
		case "guest-fsfreeze-freeze":
			if f.FailFreeze {
				reply = map[string]any{"error": map[string]string{"class": "GenericError", "desc": "failed to freeze /: Device or resource busy"}}
			} else {
				reply = map[string]any{"return": 2}
			}
		case "guest-fsfreeze-thaw":
			reply = map[string]any{"return": 2}
		}
		b, _ := json.Marshal(reply)
		conn.Write(append(b, '\n'))
	}
}

// Commands lists the commands received, in order.
func (f *Agent) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}
