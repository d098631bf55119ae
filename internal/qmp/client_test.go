package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dialFake starts a fake QEMU and connects a client to it.
func dialFake(t *testing.T) (*fakeQEMU, *Client) {
	t.Helper()
	f := startFake(t, qemuGreeting)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return f, c
}

// asyncExecute runs Execute on a goroutine; the channel yields its error.
func asyncExecute(ctx context.Context, c *Client, command string, args, result any) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Execute(ctx, command, args, result) }()
	return done
}

// within fails the test unless ch yields within d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not done within %v", what, d)
		var zero T
		return zero
	}
}

func TestDialReadsGreetingAndNegotiates(t *testing.T) {
	f, c := dialFake(t)
	if ma, mi, mc := c.Version(); ma != 7 || mi != 2 || mc != 22 {
		t.Errorf("Version() = %d.%d.%d, want 7.2.22", ma, mi, mc)
	}
	// The fake answered qmp_capabilities itself; the next command must
	// reach it with a numeric id and no arguments.
	done := asyncExecute(context.Background(), c, "query-status", nil, nil)
	r := f.next()
	if r.Execute != "query-status" || r.HasArguments {
		t.Errorf("request = %+v, want query-status without arguments", r)
	}
	var id uint64
	if err := json.Unmarshal(r.ID, &id); err != nil || id == 0 {
		t.Errorf("id = %s, want a positive number", r.ID)
	}
	f.reply(r, `{"status": "running", "singlestep": false, "running": true}`)
	if err := within(t, done, 5*time.Second, "query-status"); err != nil {
		t.Fatal(err)
	}
}

func TestDialErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("no socket", func(t *testing.T) {
		path := filepath.Join(shortTempDir(t), "missing.sock")
		_, err := Dial(ctx, path)
		if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("error %v does not wrap ENOENT", err)
		}
		for _, want := range []string{"connect to QMP socket " + path, "is the VM running", "one client at a time"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not say %q", err, want)
			}
		}
	})
	t.Run("silent server", func(t *testing.T) {
		// What a second client sees: the connect succeeds, no greeting comes.
		path := filepath.Join(shortTempDir(t), "busy.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = Dial(ctx, path)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "one client at a time") {
			t.Errorf("error = %v, want a deadline error naming the one-client rule", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Dial took %v after its deadline", d)
		}
	})
	t.Run("not QMP", func(t *testing.T) {
		f := startFake(t, "QEMU 7.2.22 monitor - type 'help' for more information\r\n")
		_, err := Dial(ctx, f.path)
		if err == nil || !strings.Contains(err.Error(), "is this a QMP socket") {
			t.Errorf("error = %v, want one asking whether this is a QMP socket", err)
		}
	})
	t.Run("JSON but no greeting", func(t *testing.T) {
		f := startFake(t, `{"return": {}}`+"\r\n")
		_, err := Dial(ctx, f.path)
		if err == nil || !strings.Contains(err.Error(), "no \"QMP\" member") {
			t.Errorf("error = %v, want a missing-greeting error", err)
		}
	})
}

func TestExecuteArguments(t *testing.T) {
	f, c := dialFake(t)
	ctx := context.Background()
	var nilArgs *struct{ X int }
	cases := []struct {
		name string
		args any
		want string // "" = no arguments member
	}{
		{"nil", nil, ""},
		{"typed nil pointer", nilArgs, ""},
		{"map", map[string]any{"node-name": "disk0"}, `{"node-name":"disk0"}`},
		{"struct", struct {
			Flat bool `json:"flat"`
		}{true}, `{"flat":true}`},
	}
	for _, tc := range cases {
		done := asyncExecute(ctx, c, "cmd", tc.args, nil)
		r := f.next()
		if tc.want == "" && r.HasArguments {
			t.Errorf("%s: arguments %s sent, want none", tc.name, r.Arguments)
		}
		if tc.want != "" && string(r.Arguments) != tc.want {
			t.Errorf("%s: arguments %s, want %s", tc.name, r.Arguments, tc.want)
		}
		f.reply(r, `{}`)
		if err := within(t, done, 5*time.Second, tc.name); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if err := c.Execute(ctx, "cmd", map[string]any{"bad": make(chan int)}, nil); err == nil || !strings.Contains(err.Error(), "marshal arguments") {
		t.Errorf("unmarshallable arguments: error = %v", err)
	}
}

func TestRepliesOutOfOrder(t *testing.T) {
	f, c := dialFake(t)
	const n = 5
	type result struct {
		Cmd string `json:"cmd"`
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			cmd := "cmd-" + string(rune('a'+i))
			var res result
			if err := c.Execute(context.Background(), cmd, nil, &res); err != nil {
				errs <- err
			} else if res.Cmd != cmd {
				errs <- errors.New(cmd + " got the reply of " + res.Cmd)
			}
		})
	}
	reqs := make([]fakeRequest, n)
	for i := range reqs {
		reqs[i] = f.next()
	}
	for i := n - 1; i >= 0; i-- { // answer the last first
		f.reply(reqs[i], `{"cmd": "`+reqs[i].Execute+`"}`)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestEventsInterleavedWithReplies(t *testing.T) {
	f, c := dialFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	job0 := c.Subscribe("BLOCK_JOB_CANCELLED", MatchData("device", "job0"))
	defer job0.Close()
	all := c.Subscribe("", nil)
	defer all.Close()

	done := asyncExecute(ctx, c, "block-job-cancel", map[string]string{"device": "job0"}, nil)
	r := f.next()
	// QEMU may send the event before the reply (quit does), or after.
	f.event("BLOCK_JOB_CANCELLED", `{"device": "job1", "type": "backup", "len": 1, "offset": 0, "speed": 0}`)
	f.event("BLOCK_JOB_CANCELLED", `{"device": "job0", "type": "backup", "len": 1, "offset": 65536, "speed": 0}`)
	f.reply(r, `{}`)
	f.event("JOB_STATUS_CHANGE", `{"id": "job0", "status": "null"}`)
	if err := within(t, done, 5*time.Second, "block-job-cancel"); err != nil {
		t.Fatal(err)
	}

	e, err := job0.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Device string `json:"device"`
		Offset int64  `json:"offset"`
	}
	if err := e.DecodeData(&data); err != nil || data.Device != "job0" || data.Offset != 65536 {
		t.Errorf("event data = %+v (%v), want job0 at offset 65536", data, err)
	}
	if want := time.Unix(1700000000, 250000000); !e.Timestamp.Equal(want) {
		t.Errorf("timestamp = %v, want %v", e.Timestamp, want)
	}
	for _, want := range []string{"BLOCK_JOB_CANCELLED", "BLOCK_JOB_CANCELLED", "JOB_STATUS_CHANGE"} {
		e, err := all.Wait(ctx)
		if err != nil || e.Name != want {
			t.Fatalf("all.Wait = %s, %v; want %s", e.Name, err, want)
		}
	}

	// WaitEvent sees an event sent after it is called.
	got := make(chan error, 1)
	go func() {
		_, err := c.WaitEvent(ctx, "SHUTDOWN", nil)
		got <- err
	}()
	for {
		c.mu.Lock()
		n := len(c.waiters)
		c.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	f.event("SHUTDOWN", `{"guest": false, "reason": "host-qmp-quit"}`)
	if err := within(t, got, 5*time.Second, "WaitEvent"); err != nil {
		t.Fatal(err)
	}

	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, err := job0.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with no event = %v, want a deadline error", err)
	}
	job0.Close()
	if _, err := job0.Wait(ctx); err == nil {
		t.Error("Wait after Close succeeded")
	}
}

func TestErrorReply(t *testing.T) {
	f, c := dialFake(t)
	done := asyncExecute(context.Background(), c, "transaction", nil, nil)
	f.replyError(f.next(), "GenericError", "Bitmap already exists: b0")
	err := within(t, done, 5*time.Second, "transaction")
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) is not a *qmp.Error", err, err)
	}
	if qe.Class != "GenericError" || qe.Desc != "Bitmap already exists: b0" || qe.Command != "transaction" {
		t.Errorf("error = %+v", qe)
	}
	if got, want := err.Error(), "QMP transaction: GenericError: Bitmap already exists: b0"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestConnectionDropFailsPendingCalls(t *testing.T) {
	f, c := dialFake(t)
	ctx := context.Background()
	w := c.Subscribe("SHUTDOWN", nil)
	defer w.Close()
	a := asyncExecute(ctx, c, "a", nil, nil)
	b := asyncExecute(ctx, c, "b", nil, nil)
	f.next()
	f.next()
	f.event("SHUTDOWN", `{"guest": true, "reason": "guest-shutdown"}`)
	f.drop()
	for name, ch := range map[string]<-chan error{"a": a, "b": b} {
		if err := within(t, ch, 5*time.Second, name); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "did the VM exit") {
			t.Errorf("pending call %s: error = %v, want ErrClosed saying the VM may have exited", name, err)
		}
	}
	if err := c.Execute(ctx, "c", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after the drop: error = %v, want ErrClosed", err)
	}
	// An event that came before the drop is still delivered, then ErrClosed.
	if e, err := w.Wait(ctx); err != nil || e.Name != "SHUTDOWN" {
		t.Errorf("Wait = %v, %v; want the SHUTDOWN sent before the drop", e.Name, err)
	}
	if _, err := w.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("second Wait: error = %v, want ErrClosed", err)
	}
}

func TestContextCancel(t *testing.T) {
	f, c := dialFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	done := asyncExecute(ctx, c, "slow", nil, nil)
	slow := f.next()
	if err := within(t, done, 2*time.Second, "slow"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled call returned after %v", d)
	}
	// The late reply is discarded; the next call gets its own.
	var got string
	fast := asyncExecute(context.Background(), c, "fast", nil, &got)
	r := f.next()
	f.reply(slow, `"late reply of slow"`)
	f.reply(r, `"fast"`)
	if err := within(t, fast, 5*time.Second, "fast"); err != nil || got != "fast" {
		t.Errorf("next call = %q, %v; want \"fast\"", got, err)
	}
	// A context that is already done does not send at all.
	if err := c.Execute(ctx, "never", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("call with an expired context: error = %v", err)
	}
}

func TestClose(t *testing.T) {
	f, c := dialFake(t)
	done := asyncExecute(context.Background(), c, "pending", nil, nil)
	f.next()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := within(t, done, 5*time.Second, "pending"); !errors.Is(err, ErrClosed) {
		t.Errorf("pending call: error = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestQuitAcceptsClosedConnection(t *testing.T) {
	f, c := dialFake(t)
	done := make(chan error, 1)
	go func() { done <- c.Quit(context.Background()) }()
	if r := f.next(); r.Execute != "quit" {
		t.Fatalf("sent %s, want quit", r.Execute)
	}
	f.event("SHUTDOWN", `{"guest": false, "reason": "host-qmp-quit"}`)
	f.drop() // no reply: QEMU exited first
	if err := within(t, done, 5*time.Second, "quit"); err != nil {
		t.Errorf("Quit = %v, want nil", err)
	}
}
