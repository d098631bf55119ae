package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/drctl/drctl/internal/units"
	"github.com/drctl/drctl/targets"
)

type progressField struct {
	name  string
	bytes int64
}

type progressState struct {
	total, done int64
	fields      []progressField
}

// startProgress shows a live line on a terminal (stderr) and, with --json,
// emits a status event every few seconds. It returns a stop function.
func (a *app) startProgress(ctx context.Context, label string, state func() progressState) func() {
	tty := false
	if f, ok := a.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	if a.quiet || (!tty && !a.jsonOut) {
		return func() {}
	}
	interval := 250 * time.Millisecond
	if a.jsonOut {
		interval = 2 * time.Second
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty && !a.jsonOut {
					fmt.Fprint(a.stderr, "\r\033[K")
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s := state()
			el := time.Since(start)
			rate := float64(s.done) / el.Seconds()
			if a.jsonOut {
				ev := map[string]any{"message_type": "status", "label": label, "seconds_elapsed": el.Seconds(), "bytes_total": s.total, "bytes_done": s.done}
				for _, f := range s.fields {
					ev["bytes_"+f.name] = f.bytes
				}
				_ = a.printJSON(ev)
				continue
			}
			var b strings.Builder
			pct := 0.0
			if s.total > 0 {
				pct = 100 * float64(s.done) / float64(s.total)
			}
			fmt.Fprintf(&b, "%s %5.1f%% %s/%s", label, pct, units.Bytes(s.done), units.Bytes(s.total))
			for _, f := range s.fields {
				fmt.Fprintf(&b, "  %s %s", f.name, units.Bytes(f.bytes))
			}
			fmt.Fprintf(&b, "  %s/s", units.Bytes(int64(rate)))
			if rate > 0 && s.total > s.done {
				eta := time.Duration(float64(s.total-s.done)/rate) * time.Second
				fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
			}
			fmt.Fprintf(a.stderr, "\r\033[K%s", b.String())
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func (a *app) stats() targets.Stats {
	if a.counter == nil {
		return targets.Stats{}
	}
	return a.counter.Snapshot()
}

func (a *app) uploadedBytes() int64 { return a.stats().Total.BytesSent }

func (a *app) requestCount() int64 { return a.stats().Total.Requests }

// objectsWritten counts successful writes.
func (a *app) objectsWritten() int64 {
	s := a.stats()
	var n int64
	for _, op := range []targets.Op{targets.OpPut, targets.OpPutIfAbsent, targets.OpPutIfMatch} {
		o := s.Ops[op]
		n += o.Calls - o.Errors - o.Conflicts - o.NotFound
	}
	return n
}
