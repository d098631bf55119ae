package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/recovery/failover"
	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/repo"
)

// siteFlags are the flags of the commands that act at a recovery site.
type siteFlags struct {
	plan     string
	stateDir string
}

func (fl *siteFlags) register(cmd *cobra.Command, needPlan bool) {
	f := cmd.Flags()
	usage := "recovery plan file (YAML)"
	if !needPlan {
		usage += "; optional"
	}
	f.StringVar(&fl.plan, "plan", "", usage)
	f.StringVar(&fl.stateDir, "state-dir", "", "where this site keeps replicas, restored disks and failover state (default: state_dir: of the plan, else the drctl state directory's site/)")
	if needPlan {
		_ = cmd.MarkFlagRequired("plan")
	}
}

// loadPlan reads the plan and fills in the site's name and directory.
func (a *app) loadPlan(fl siteFlags) (*plan.Plan, string, error) {
	p, err := plan.Load(fl.plan)
	if err != nil {
		return nil, "", usageError{err}
	}
	if p.Site == "" {
		if p.Site, err = a.site(); err != nil {
			return nil, "", err
		}
	} else if a.siteFlag != "" && a.siteFlag != p.Site {
		return nil, "", usageError{fmt.Errorf("--site %s contradicts site: %s in %s", a.siteFlag, p.Site, fl.plan)}
	}
	dir, err := a.siteStateDir(fl, p)
	return p, dir, err
}

// planAndRepo loads the plan, then opens the repository: a plan with
// mistakes is reported before any password is asked for.
func (a *app) planAndRepo(ctx context.Context, fl siteFlags) (*plan.Plan, string, *repo.Repository, error) {
	p, dir, err := a.loadPlan(fl)
	if err != nil {
		return nil, "", nil, err
	}
	r, err := a.openRepo(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	return p, dir, r, nil
}

func (a *app) siteStateDir(fl siteFlags, p *plan.Plan) (string, error) {
	switch {
	case fl.stateDir != "":
		return filepath.Abs(fl.stateDir)
	case p != nil && p.StateDir != "":
		return p.StateDir, nil
	case a.stateDir() != "":
		return filepath.Join(a.stateDir(), "site"), nil
	}
	return "", usageError{errors.New("no state directory: pass --state-dir or set state_dir: in the plan")}
}

func (a *app) planCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "plan", Short: "Work with recovery plans"}
	var fl siteFlags
	check := &cobra.Command{
		Use:   "check --plan FILE",
		Short: "Validate a recovery plan against the repository and this host, changing nothing",
		Long: "Checks the plan file, that every VM has the recovery point the plan asks for and that its manifest\n" +
			"reads, that every NIC of every VM maps to a network of the plan, and that bridges, taps and\n" +
			"kernel files exist here. Prints what a failover would use.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dir, r, err := a.planAndRepo(cmd.Context(), fl)
			if err != nil {
				return err
			}
			planned, err := failover.Check(cmd.Context(), r, p, dir)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"plan": p.Name, "site": p.Site, "ok": true, "vms": planned})
			}
			now := time.Now()
			a.printf("plan %s is valid for site %s (%d VMs)\n", p.Name, p.Site, len(planned))
			for _, v := range planned {
				a.printf("  %-12s group %-10s recovery point %s of %s (%s old, %s), %d CPU, %d MiB, disks %v\n",
					v.VM, v.Group, v.Snapshot[:8], v.SnapshotTime.Local().Format(time.DateTime), now.Sub(v.SnapshotTime).Round(time.Second),
					v.Consistency, v.CPUs, v.MemoryMiB, v.Disks)
				for _, n := range v.Networks {
					a.printf("      nic %s\n", n)
				}
				for _, c := range v.Checks {
					a.printf("      check %s\n", c)
				}
			}
			return nil
		},
	}
	fl.register(check, true)
	cmd.AddCommand(check)
	return cmd
}

func (a *app) failoverCommand() *cobra.Command {
	var fl siteFlags
	var force bool
	var reason, adopt string
	cmd := &cobra.Command{
		Use:   "failover --plan FILE",
		Short: "Declare the primary lost and boot the plan's replicas at this site",
		Long: "Takes ownership of every VM of the plan (fence records, compare-and-swap: of concurrent failovers\n" +
			"exactly one wins), restores the recovery points, boots one QEMU per VM in the plan's group order,\n" +
			"runs the health checks and prints the RTO and RPO of each VM. Refuses while the primary still\n" +
			"sends heartbeats younger than the plan's lease, unless --force. After it, the primary's replicate\n" +
			"refuses to commit. Rerun after an interruption, it resumes and never starts a VM twice.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dir, r, err := a.planAndRepo(cmd.Context(), fl)
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			opts := failover.Options{Plan: p, Site: p.Site, StateDir: dir, Force: force, AdoptRun: adopt, Host: host, Reason: reason, Logger: a.log}
			if !a.jsonOut && !a.quiet {
				opts.Progress = func(vm, step string) { a.printf("  %-12s %s\n", vm, step) }
				a.printf("failover of plan %s to site %s\n", p.Name, p.Site)
			}
			res, err := failover.Run(cmd.Context(), r, opts)
			if res != nil {
				a.printFailover(res)
			}
			return err
		},
	}
	fl.register(cmd, true)
	cmd.Flags().BoolVar(&force, "force", false, "fail over even though the primary sent a heartbeat within the lease (make sure it is down)")
	cmd.Flags().StringVar(&adopt, "adopt-run", "", "continue failover run ID (named in the fence records) whose state directory was lost; make sure it runs nowhere else")
	cmd.Flags().StringVar(&reason, "reason", "", "why the primary is declared lost, kept in the fence and failover records")
	return cmd
}

func (a *app) printFailover(res *failover.Result) {
	if a.jsonOut {
		_ = a.printJSON(res)
		return
	}
	verdict := "all VMs healthy"
	if !res.OK {
		verdict = "FAILED"
	}
	a.printf("failover %s of plan %s: %s\n", res.Run, res.Plan, verdict)
	a.printTimingHeader("STATUS")
	for _, v := range res.VMs {
		a.printTimingRow(v.VM, v.Status, v.Snapshot, v.RPOSeconds, v.RestoreSeconds, v.BootSeconds, v.RTOSeconds)
		if v.Error != "" {
			a.printf("      %s\n", v.Error)
		}
	}
}

// printTimingHeader and printTimingRow print the per-VM table of a
// failover or a drill: the recovery point and the measured times.
func (a *app) printTimingHeader(status string) {
	a.printf("  %-12s %-10s %-9s %9s %9s %9s %9s\n", "VM", status, "POINT", "RPO", "RESTORE", "BOOT", "RTO")
}

func (a *app) printTimingRow(vm, status, snapshot string, rpo, restore, boot, rto float64) {
	a.printf("  %-12s %-10s %-9s %9s %9s %9s %9s\n", vm, status, short8(snapshot), secs(rpo), secs(restore), secs(boot), secs(rto))
}

func short8(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func secs(s float64) string {
	if s == 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func (a *app) statusCommand() *cobra.Command {
	var fl siteFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show who owns each VM, its latest recovery point (the RPO now) and the replicas at this site",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p *plan.Plan
			if fl.plan != "" {
				var err error
				if p, _, err = a.loadPlan(fl); err != nil {
					return err
				}
			}
			dir, err := a.siteStateDir(fl, p)
			if err != nil {
				dir = ""
			}
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			site := ""
			if p != nil {
				site = p.Site
			} else if site, err = a.site(); err != nil {
				return err
			}
			now := time.Now()
			sts, err := failover.Status(cmd.Context(), r, site, dir, now)
			if err != nil {
				return err
			}
			drills, err := failover.LastDrills(cmd.Context(), r.Target())
			if err != nil {
				return err
			}
			if a.jsonOut {
				if drills == nil {
					drills = []failover.LastDrill{}
				}
				return a.printJSON(map[string]any{"vms": sts, "state_dir": dir, "last_drills": drills})
			}
			a.printf("%-12s %-14s %5s %-9s %10s %14s %s\n", "VM", "OWNER", "EPOCH", "LATEST", "RPO NOW", "HEARTBEAT", "REPLICA HERE")
			for _, s := range sts {
				owner := s.Owner
				if owner == "" {
					owner = "primary"
				}
				hb := "-"
				if !s.Heartbeat.IsZero() {
					hb = fmt.Sprintf("%s ago", now.Sub(s.Heartbeat).Round(time.Second))
				}
				rep := "-"
				if s.Replica {
					rep = fmt.Sprintf("pid %d, %s", s.ReplicaPID, s.ReplicaStatus)
					if s.Health != "" {
						rep += fmt.Sprintf(", %s at failover %s", s.Health, short8(s.HealthRun))
					}
				}
				a.printf("%-12s %-14s %5d %-9s %10s %14s %s\n", s.VM, owner, s.Epoch, short8(s.Latest), secs(s.RPOSeconds), hb, rep)
			}
			for i, d := range drills {
				if i == 0 {
					a.printf("\nlast drill per plan:\n")
				}
				verdict := "passed"
				if !d.Passed {
					verdict = "FAILED"
				}
				a.printf("  %-12s %s at %s (site %s, %s ago): %s, longest RTO %s\n", d.Plan, d.ID[:8], d.Started.Local().Format(time.DateTime),
					d.Site, now.Sub(d.Started).Round(time.Minute), verdict, secs(d.MaxRTOSeconds))
			}
			return nil
		},
	}
	fl.register(cmd, false)
	return cmd
}

func (a *app) stopReplicasCommand() *cobra.Command {
	var fl siteFlags
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "stop-replicas --plan FILE",
		Short: "Shut down the plan's replicas at this site (ACPI power-down, then a hard stop after --grace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dir, err := a.loadPlan(fl)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), grace+time.Minute)
			defer cancel()
			stopped, err := failover.StopReplicas(ctx, p, dir, grace)
			if a.jsonOut {
				if perr := a.printJSON(map[string]any{"stopped": stopped}); perr != nil {
					return perr
				}
			} else {
				for _, vm := range stopped {
					a.printf("stopped replica %s\n", vm)
				}
				if len(stopped) == 0 && err == nil {
					a.printf("no replica of plan %s runs here\n", p.Name)
				}
			}
			return err
		},
	}
	fl.register(cmd, true)
	cmd.Flags().DurationVar(&grace, "grace", 30*time.Second, "how long a guest may take to power down before it is stopped hard")
	return cmd
}
