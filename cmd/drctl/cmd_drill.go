package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/recovery/failover"
	"github.com/drctl/drctl/recovery/report"
)

func (a *app) drillCommand() *cobra.Command {
	var fl siteFlags
	var keep bool
	var ttl time.Duration
	var reportDir string
	cmd := &cobra.Command{
		Use:   "drill --plan FILE",
		Short: "Prove a recovery plan works: boot its replicas in isolation, check them, report RTO/RPO, tear down",
		Long: "Runs the plan as a failover would, but takes no fence (production keeps replicating), puts every\n" +
			"NIC on an isolated network (QEMU user networking, restrict=on: no route to production), boots the\n" +
			"replicas on writable overlays, runs the health checks and the plan's drill checks, and tears\n" +
			"everything down, also on Ctrl-C or a failed check. The report (RTO, RPO, every check's result and\n" +
			"output, a timeline) is kept in the repository under drills/ (drctl drills list|show) and, with\n" +
			"--report DIR, written there as JSON, HTML and Markdown. --keep leaves the replicas running for a\n" +
			"person to inspect until --ttl has passed (drctl drill stop ends them sooner).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return usageError{fmt.Errorf("--ttl must be positive")}
			}
			p, dir, r, err := a.planAndRepo(cmd.Context(), fl)
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			opts := failover.DrillOptions{Plan: p, Site: p.Site, Host: host, StateDir: dir, Keep: keep,
				KeepFor: ttl, Logger: a.log}
			if !a.jsonOut && !a.quiet {
				opts.Progress = func(vm, step string) { a.printf("  %-12s %s\n", vm, step) }
				a.printf("drill of plan %s at site %s (isolated network, no fence taken)\n", p.Name, p.Site)
			}
			d, err := failover.Drill(cmd.Context(), r, opts)
			if d == nil {
				return err
			}
			if d.Kept {
				if rerr := a.spawnReaper(d.KeepUntil, dir, d); rerr != nil {
					a.log.Error("could not schedule the teardown of the kept replicas: run `drctl drill stop` yourself", "err", rerr)
				}
			}
			if reportDir != "" {
				if werr := writeReports(reportDir, d); werr != nil {
					return werr
				}
			}
			a.printDrill(d, reportDir)
			if err != nil && !d.Passed && cmd.Context().Err() == nil {
				return fmt.Errorf("%w: %v", failover.ErrUnhealthy, err)
			}
			return err
		},
	}
	fl.register(cmd, true)
	f := cmd.Flags()
	f.BoolVar(&keep, "keep", false, "leave the replicas running for inspection (torn down after --ttl, or by drctl drill stop)")
	f.DurationVar(&ttl, "ttl", 2*time.Hour, "with --keep: how long the replicas may run before they are torn down anyway")
	f.StringVar(&reportDir, "report", "", "also write the report to this directory (report.json, report.html, report.md)")

	var stopFl siteFlags
	var stopDir string
	var stopAt string
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Tear down the replicas of drills run with --keep at this site",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stopDir != "" {
				return a.reap(cmd.Context(), stopDir, stopAt)
			}
			var dir string
			var err error
			planName := ""
			if stopFl.plan != "" {
				p, d, err := a.loadPlan(stopFl)
				if err != nil {
					return err
				}
				planName, dir = p.Name, d
			} else if dir, err = a.siteStateDir(stopFl, nil); err != nil {
				return err
			}
			kept, err := failover.KeptDrills(cmd.Context(), dir)
			if err != nil {
				return err
			}
			n := 0
			for _, k := range kept {
				if planName != "" && k.Plan != planName {
					continue
				}
				if err := failover.TeardownDrill(cmd.Context(), k.Dir); err != nil {
					return err
				}
				n++
				a.printf("tore down drill %s of plan %s (%d replicas)\n", k.ID, k.Plan, len(k.Running))
			}
			if n == 0 {
				a.printf("no kept drill at this site\n")
			}
			return nil
		},
	}
	stopFl.register(stop, false)
	stop.Flags().StringVar(&stopDir, "dir", "", "")
	stop.Flags().StringVar(&stopAt, "at", "", "")
	_ = stop.Flags().MarkHidden("dir")
	_ = stop.Flags().MarkHidden("at")
	cmd.AddCommand(stop)
	return cmd
}

// spawnReaper starts a detached drctl that tears the kept drill down at
// its time-to-live, even if nobody remembers it: forgotten drill replicas
// are a known cost trap.
func (a *app) spawnReaper(until time.Time, stateDir string, d *report.Drill) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := filepath.Join(stateDir, "drills", d.Plan+"-"+d.ID)
	c := exec.Command(self, "drill", "stop", "--dir", dir, "--at", until.Format(time.RFC3339))
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return err
	}
	return c.Process.Release()
}

// reap waits until at (RFC 3339) and tears the drill in dir down.
func (a *app) reap(ctx context.Context, dir, at string) error {
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return usageError{fmt.Errorf("--at %q: %w", at, err)}
		}
		// Poll, so that the reaper of a drill stopped early goes away.
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for time.Now().Before(t) {
			if _, err := os.Stat(dir); err != nil {
				return nil
			}
			select {
			case <-tick.C:
			case <-time.After(time.Until(t)):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // torn down already
	}
	return failover.TeardownDrill(ctx, dir)
}

func writeReports(dir string, d *report.Drill) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report directory: %w", err)
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"report.json", d.WriteJSON}, {"report.html", d.WriteHTML}, {"report.md", d.WriteMarkdown}} {
		out, err := os.Create(filepath.Join(dir, f.name))
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		err = f.write(out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write report %s: %w", f.name, err)
		}
	}
	return nil
}

func (a *app) printDrill(d *report.Drill, reportDir string) {
	if a.jsonOut {
		_ = d.WriteJSON(a.stdout)
		return
	}
	verdict := "PASSED"
	if !d.Passed {
		verdict = "FAILED"
	}
	a.printf("drill %s of plan %s: %s\n", d.ID, d.Plan, verdict)
	a.printTimingHeader("RESULT")
	for _, v := range d.VMs {
		a.printTimingRow(v.VM, v.Status, v.Snapshot, v.RPOSeconds, v.RestoreSeconds, v.BootSeconds, v.RTOSeconds)
		for _, c := range v.Checks {
			if !c.OK {
				a.printf("      check %s failed: %s\n", c.Name, c.Err)
				if c.Output != "" {
					a.printf("      output: %s\n", truncate(c.Output, 400))
				}
			}
		}
		if v.Error != "" && v.Status != "passed" {
			a.printf("      %s\n", v.Error)
		}
	}
	switch {
	case d.Kept:
		a.printf("replicas kept until %s (drctl drill stop ends them sooner)\n", d.KeepUntil.Local().Format(time.DateTime))
	case !d.TornDown.IsZero():
		a.printf("torn down; report stored as drills/%s (drctl drills show %s)\n", d.Plan, d.ID[:8])
	}
	if reportDir != "" {
		a.printf("report written to %s\n", reportDir)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (a *app) drillsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "drills", Short: "List and show the drill reports kept in the repository"}
	var planName string
	list := &cobra.Command{
		Use:   "list",
		Short: "List drills, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			refs, err := failover.ListDrills(cmd.Context(), r.Target(), planName)
			if err != nil {
				return err
			}
			var rows []map[string]any
			for _, ref := range refs {
				d, err := failover.LoadDrill(cmd.Context(), r.Target(), ref)
				if err != nil {
					return err
				}
				if a.jsonOut {
					rows = append(rows, map[string]any{"id": d.ID, "plan": d.Plan, "site": d.Site, "started": d.Started, "passed": d.Passed, "vms": len(d.VMs)})
					continue
				}
				verdict := "passed"
				if !d.Passed {
					verdict = "FAILED"
				}
				a.printf("%s  %-12s %-10s %s  %d VMs  %s\n", d.ID[:8], d.Plan, d.Site, d.Started.Local().Format(time.DateTime), len(d.VMs), verdict)
			}
			if a.jsonOut {
				if rows == nil {
					rows = []map[string]any{}
				}
				return a.printJSON(rows)
			}
			return nil
		},
	}
	list.Flags().StringVar(&planName, "plan", "", "only drills of this plan (its name)")
	var format, output string
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print a drill report as text, JSON, HTML or Markdown",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			d, err := failover.FindDrill(cmd.Context(), r.Target(), args[0])
			if err != nil {
				return err
			}
			w := a.stdout
			if output != "" {
				f, err := os.Create(output)
				if err != nil {
					return fmt.Errorf("write report: %w", err)
				}
				defer f.Close()
				w = f
			}
			switch format {
			case "text":
				a.printDrill(d, "")
				return nil
			case "json":
				return d.WriteJSON(w)
			case "html":
				return d.WriteHTML(w)
			case "md", "markdown":
				return d.WriteMarkdown(w)
			}
			return usageError{fmt.Errorf("--format %q: use text, json, html or md", format)}
		},
	}
	show.Flags().StringVar(&format, "format", "text", "text, json, html or md")
	show.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	cmd.AddCommand(list, show)
	return cmd
}
