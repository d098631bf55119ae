package testvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// A minimal QMP exchange for the test's own monitor socket: connect, read
// the greeting, negotiate capabilities, run one command, hang up. It is
// deliberately independent of drctl's QMP client, which is what the
// tests exercise on the other socket.

// qmpReply is a command's answer; events in between are skipped.
type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// qmpRun runs one command (args may be nil) on the monitor at path and
// returns its "return" value.
func qmpRun(ctx context.Context, path, command string, args any) (json.RawMessage, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	dec := json.NewDecoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("qmp %s: no greeting: %w", command, errors.Join(err, ctx.Err()))
	}
	if _, err := qmpExchange(dec, conn, "qmp_capabilities", nil); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, errors.Join(err, ctx.Err()))
	}
	ret, err := qmpExchange(dec, conn, command, args)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, errors.Join(err, ctx.Err()))
	}
	return ret, nil
}

func qmpExchange(dec *json.Decoder, conn net.Conn, command string, args any) (json.RawMessage, error) {
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	if err := json.NewEncoder(conn).Encode(msg); err != nil {
		return nil, err
	}
	for {
		var r qmpReply
		if err := dec.Decode(&r); err != nil {
			return nil, err
		}
		switch {
		case r.Error != nil:
			return nil, fmt.Errorf("%s: %s", r.Error.Class, r.Error.Desc)
		case r.Return != nil:
			return r.Return, nil
		}
		// An event: not the answer.
	}
}
