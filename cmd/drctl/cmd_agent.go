package main

import (
	"context"
	"errors"
	"fmt"
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
			ag, err := agent.New(agent.Options{Config: a.cfg, Site: site, Host: host, Open: a.agentOpener(a.cfg), StateDir: a.defaultSiteDir(), Logger: a.log})
			if err != nil {
				return err
			}
			if once {
				return ag.RunOnce(cmd.Context(), prune)
			}
			for _, name := range a.cfg.VMNames() {
				if a.cfg.VMs[name].Schedule == "" {
					a.log.Warn("vm has no schedule: the agent does not replicate it (add schedule:)", "vm", name)
				}
			}
			stopHTTP, err := a.serveMetrics(a.cfg.Agent.Metrics, ag.Handler())
			if err != nil {
				return err
			}
			defer stopHTTP()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					cfg, err := config.Load(a.configFlag, a.lookupEnv)
					if err == nil {
						err = ag.Reload(cfg)
					}
					ag.ReloadResult(err)
					if err != nil {
						a.log.Error("config reload refused: the old config keeps running", "err", err)
						continue
					}
					a.log.Info("config reloaded", "file", cfg.File)
				}
			}()
			return ag.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "replicate every VM once, apply retention, and exit")
	cmd.Flags().BoolVar(&prune, "prune", false, "with --once: also prune the repositories")
	return cmd
}

// defaultSiteDir is where drills run when nothing else says.
func (a *app) defaultSiteDir() string {
	if d := a.stateDir(); d != "" {
		return filepath.Join(d, "site")
	}
	return ""
}

// agentOpener opens repositories for the agent: with retries, and with
// the host's upload cap shared by all of them.
func (a *app) agentOpener(cfg *config.Config) agent.Opener {
	var lim *rate.Limiter
	if bw := cfg.Agent.BandwidthBytes(); bw > 0 {
		lim = targets.NewLimiter(bw)
	}
	var mu sync.Mutex
	return func(ctx context.Context, name string) (*repo.Repository, error) {
		mu.Lock()
		defer mu.Unlock()
		rc, err := cfg.ResolveRepository(name)
		if err != nil {
			return nil, err
		}
		t, err := a.openTarget(ctx, rc, false, a.log)
		if err != nil {
			return nil, err
		}
		if lim != nil {
			t = targets.NewRateLimited(t, lim)
		}
		if rc.Password == "" {
			return nil, fmt.Errorf("repository %s: %w (the agent cannot ask: set password_file: or DRCTL_PASSWORD_FILE)", rc.URL, errNoPassword)
		}
		r, err := repo.Open(ctx, t, rc.Password, a.repoOptions())
		// The key derivation's 64 MiB are garbage now: give them back
		// rather than carry them for the daemon's life.
		debug.FreeOSMemory()
		return r, err
	}
}

// serveMetrics serves the agent's handler on addr ("" = not at all).
func (a *app) serveMetrics(addr string, h http.Handler) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent.metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
