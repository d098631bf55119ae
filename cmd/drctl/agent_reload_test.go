package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"github.com/drctl/drctl/config"
)

func loadTestConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drctl.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAgentTargetsReload checks a reload changes the one upload limiter
// every open repository shares, to a cap and back to none.
func TestAgentTargetsReload(t *testing.T) {
	a := &app{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tg := newAgentTargets(a, loadTestConfig(t, "agent: {bandwidth: 10MiB}\n"))
	lim := tg.lim
	if lim.Limit() != rate.Limit(10<<20) {
		t.Fatalf("limit %v, want 10 MiB/s", lim.Limit())
	}
	tg.reload(loadTestConfig(t, "agent: {bandwidth: 1MiB}\n"))
	if tg.lim != lim || lim.Limit() != rate.Limit(1<<20) || lim.Burst() <= 0 {
		t.Fatalf("after reload: same limiter %v, limit %v, burst %d", tg.lim == lim, lim.Limit(), lim.Burst())
	}
	tg.reload(loadTestConfig(t, "agent: {}\n"))
	if lim.Limit() != rate.Inf {
		t.Fatalf("without a cap: limit %v", lim.Limit())
	}
}

// TestMetricsServerMove checks the metrics move to a new address on
// reload, stay put when it is unchanged, and that an address in use
// refuses the reload while the old one keeps serving.
func TestMetricsServerMove(t *testing.T) {
	a := &app{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	m := &metricsServer{app: a, handler: h}
	defer m.stop()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	answers := func(addr string) bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	first := free()
	if err := m.serve(first); err != nil {
		t.Fatal(err)
	}
	if !answers(first) {
		t.Fatal("not serving")
	}
	swap, err := m.prepare(first)
	if err != nil {
		t.Fatalf("same address: %v", err)
	}
	swap(true)
	if !answers(first) {
		t.Fatal("same address: stopped serving")
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := m.prepare(busy.Addr().String()); err == nil || !strings.Contains(err.Error(), "agent.metrics") {
		t.Fatalf("address in use: %v", err)
	}
	if !answers(first) {
		t.Fatal("a refused move stopped the old server")
	}

	second := free()
	swap, err = m.prepare(second)
	if err != nil {
		t.Fatal(err)
	}
	swap(false) // the rest of the reload failed: nothing moves
	if !answers(first) || answers(second) {
		t.Fatal("an abandoned move changed the server")
	}
	swap, err = m.prepare(second)
	if err != nil {
		t.Fatal(err)
	}
	swap(true)
	if answers(first) || !answers(second) {
		t.Fatal("the move did not take")
	}
	swap, err = m.prepare("")
	if err != nil {
		t.Fatal(err)
	}
	swap(true)
	if answers(second) {
		t.Fatal("metrics still served after the address was removed")
	}
}
