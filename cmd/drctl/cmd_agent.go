package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/drctl/drctl/agent"
	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

func (a *app) agentCommand() *cobra.Command {
	var once, prune bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the replication daemon: VMs on their cron schedules, retention, prune, heartbeats, RPO alerts, metrics",
		Long: "Replicates every VM of drctl.yaml that has a schedule:, applies its keep: rules after each snapshot,\n" +
			"prunes each repository on agent.prune (default @daily), writes heartbeats for the recovery side,\n" +
			"alerts (log, metric, agent.webhook) when a VM's newest recovery point is older than its rpo:, and\n" +
			"serves Prometheus metrics and /healthz on agent.metrics. SIGHUP reloads the config (a bad one is\n" +
			"refused and the old one keeps running); SIGTERM stops at a safe point. With --once, every VM is\n" +
			"replicated once (schedules ignored), for people who prefer system cron.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(a.cfg.VMs) == 0 && len(a.cfg.Drills) == 0 {
				return usageError{fmt.Errorf("nothing to do in the config (%s): list VMs under vms, or drills under drills", a.cfg.File)}
			}
			site, err := a.site()
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			targets := newAgentTargets(a, a.cfg)
			ag, err := agent.New(agent.Options{Config: a.cfg, Site: site, Host: host, Open: targets.open, StateDir: a.defaultSiteDir(), Logger: a.log})
			if err != nil {
				return err
			}
			if once {
				return ag.RunOnce(cmd.Context(), prune)
			}
			// A daemon's log is its record: each snapshot committed is
			// worth a line, where a one-off command stays quiet.
			if err := a.setAgentLogLevel(a.cfg); err != nil {
				return err
			}
			for _, name := range a.cfg.VMNames() {
				if a.cfg.VMs[name].Schedule == "" {
					a.log.Warn("vm has no schedule: the agent does not replicate it (add schedule:)", "vm", name)
				}
			}
			metrics := &metricsServer{app: a, handler: ag.Handler()}
			if err := metrics.serve(a.cfg.Agent.Metrics); err != nil {
				return err
			}
			defer metrics.stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					// Logged before counted: whoever sees the count finds
					// the reason in the log.
					cfg, err := a.reloadAgent(ag, targets, metrics)
					if err != nil {
						a.log.Error("config reload refused: the old config keeps running", "err", err)
					} else {
						a.log.Info("config reloaded", "file", cfg.File)
					}
					ag.ReloadResult(err)
				}
			}()
			if err := ag.Run(cmd.Context()); err != nil {
				return err
			}
			// Stopped by a signal, at a safe point: exit 130 as every
			// interrupted command does (the unit file counts it as a
			// clean stop).
			if cmd.Context().Err() != nil {
				return errStopped
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "replicate every VM once, apply retention, and exit")
	cmd.Flags().BoolVar(&prune, "prune", false, "with --once: also prune the repositories")
	return cmd
}

// errStopped ends an agent stopped by SIGTERM or Ctrl-C: exit 130.
var errStopped = fmt.Errorf("agent stopped at a safe point: %w", context.Canceled)

// defaultSiteDir is where drills run when nothing else says.
func (a *app) defaultSiteDir() string {
	if d := a.stateDir(); d != "" {
		return filepath.Join(d, "site")
	}
	return ""
}

// reloadAgent loads the config again and applies it: the agent's jobs and
// repositories, then the upload cap, the metrics address and the log
// level. Everything that can fail is checked before anything changes.
func (a *app) reloadAgent(ag *agent.Agent, t *agentTargets, m *metricsServer) (*config.Config, error) {
	cfg, err := config.Load(a.configFlag, a.lookupEnv)
	if err != nil {
		return nil, err
	}
	level, err := a.logLevelFor(cfg, slog.LevelInfo)
	if err != nil {
		return nil, err
	}
	swap, err := m.prepare(cfg.Agent.Metrics)
	if err != nil {
		return nil, err
	}
	if err := ag.Reload(cfg); err != nil {
		swap(false)
		return nil, err
	}
	swap(true)
	t.reload(cfg)
	a.level.Set(level)
	for _, w := range cfg.Warnings {
		a.log.Warn(w)
	}
	return cfg, nil
}

func (a *app) setAgentLogLevel(cfg *config.Config) error {
	level, err := a.logLevelFor(cfg, slog.LevelInfo)
	if err != nil {
		return err
	}
	a.level.Set(level)
	return nil
}

// agentTargets opens repositories for the agent: with retries, and with
// the host's upload cap shared by all of them. The cap is one limiter for
// the agent's life, so a reload changes it under running uploads too.
type agentTargets struct {
	app *app
	lim *rate.Limiter
	mu  sync.Mutex
}

func newAgentTargets(a *app, cfg *config.Config) *agentTargets {
	t := &agentTargets{app: a, lim: rate.NewLimiter(rate.Inf, 0)}
	t.reload(cfg)
	return t
}

func (t *agentTargets) reload(cfg *config.Config) {
	bw := cfg.Agent.BandwidthBytes()
	if bw <= 0 {
		t.lim.SetLimit(rate.Inf)
		return
	}
	fresh := targets.NewLimiter(bw)
	t.lim.SetBurst(fresh.Burst())
	t.lim.SetLimit(fresh.Limit())
}

func (t *agentTargets) open(ctx context.Context, rc config.Repository) (*repo.Repository, error) {
	a := t.app
	t.mu.Lock()
	defer t.mu.Unlock()
	tg, err := a.openTarget(ctx, rc, false, a.log)
	if err != nil {
		return nil, err
	}
	tg = targets.NewRateLimited(tg, t.lim)
	if rc.Password == "" {
		return nil, fmt.Errorf("repository %s: %w (the agent cannot ask: set password_file: or DRCTL_PASSWORD_FILE)", rc.URL, errNoPassword)
	}
	r, err := repo.Open(ctx, tg, rc.Password, a.repoOptions())
	// The key derivation's 64 MiB are garbage now: give them back
	// rather than carry them for the daemon's life.
	debug.FreeOSMemory()
	return r, err
}

// metricsServer serves the agent's handler on agent.metrics, and moves
// to a new address on reload without a moment with none.
type metricsServer struct {
	app     *app
	handler http.Handler
	addr    string
	srv     *http.Server
}

func (m *metricsServer) serve(addr string) error {
	swap, err := m.prepare(addr)
	if err != nil {
		return err
	}
	swap(true)
	return nil
}

// prepare listens on addr when it differs from the current one; swap(true)
// then serves there and stops the old server, swap(false) gives it up.
func (m *metricsServer) prepare(addr string) (swap func(commit bool), err error) {
	if addr == m.addr && (addr == "" || m.srv != nil) {
		return func(bool) {}, nil
	}
	var ln net.Listener
	if addr != "" {
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			if m.srv != nil && errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("agent.metrics: listen on %s: %w (if this agent holds the port under its old address %s, restart it to move)", addr, err, m.addr)
			}
			return nil, fmt.Errorf("agent.metrics: listen on %s: %w", addr, err)
		}
	}
	return func(commit bool) {
		if !commit {
			if ln != nil {
				ln.Close()
			}
			return
		}
		m.stop()
		m.addr, m.srv = addr, nil
		if ln == nil {
			return
		}
		srv := &http.Server{Handler: m.handler, ReadHeaderTimeout: 10 * time.Second}
		m.srv = srv
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.app.log.Error("metrics server stopped", "err", err)
			}
		}()
		m.app.log.Info("serving metrics", "addr", ln.Addr().String())
	}, nil
}

func (m *metricsServer) stop() {
	if m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	m.srv = nil
}
