package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/internal/units"
	"github.com/drctl/drctl/repo"
)

func (a *app) forgetCommand() *cobra.Command {
	var p repo.KeepPolicy
	var vm string
	var dryRun, prune bool
	cmd := &cobra.Command{
		Use:   "forget",
		Short: "Remove snapshots by keep rules",
		Long: `Remove the snapshots that no keep rule selects, per VM. The newest snapshot
of each VM is always kept. Data stays in the repository until prune (or pass
--prune).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if p.Empty() {
				return usageError{fmt.Errorf("no keep rule given: pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within")}
			}
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer a.printRequests()
			res, err := r.Forget(ctx, vm, p, dryRun)
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(res); err != nil {
					return err
				}
			} else {
				verb := "removed"
				if dryRun {
					verb = "would remove"
				}
				for _, s := range res.Keep {
					a.printf("keep   %s %s %s  (%s)\n", s.ID[:8], s.VM, s.Time.Local().Format("2006-01-02 15:04:05"), strings.Join(res.Reasons[s.ID], ", "))
				}
				for _, s := range res.Remove {
					a.printf("remove %s %s %s\n", s.ID[:8], s.VM, s.Time.Local().Format("2006-01-02 15:04:05"))
				}
				a.printf("%s %d snapshots, kept %d (%s)\n", verb, len(res.Remove), len(res.Keep), res.Policy)
			}
			if prune && !dryRun {
				return a.runPrune(cmd, repo.PruneOptions{})
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&vm, "vm", "", "only this VM (default: every VM)")
	f.IntVar(&p.Last, "keep-last", 0, "keep the N newest snapshots")
	f.IntVar(&p.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	f.IntVar(&p.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days")
	f.IntVar(&p.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N weeks")
	f.IntVar(&p.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months")
	f.IntVar(&p.Yearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years")
	f.DurationVar(&p.Within, "keep-within", 0, "keep every snapshot within this duration of the VM's newest (e.g. 72h)")
	f.BoolVarP(&dryRun, "dry-run", "n", false, "show what would be removed")
	f.BoolVar(&prune, "prune", false, "prune afterwards")
	return cmd
}

func (a *app) pruneCommand() *cobra.Command {
	var opts repo.PruneOptions
	var grace time.Duration
	var memory string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete data no snapshot uses",
		Long: `Delete packs that no snapshot references and repack partly used ones. Packs
younger than --grace are left alone: they may belong to a replication that is
still running on another host.

Prune's memory does not grow with the number of blobs past --max-memory: it
streams the index, and past the limit it tracks the blobs in use with a Bloom
filter, which may keep a few unused blobs for a later prune with more memory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Grace = grace
			if grace == 0 {
				opts.Grace = -1
			}
			n, err := config.ParseSize(memory)
			if err != nil {
				return usageError{fmt.Errorf("--max-memory: %w", err)}
			}
			opts.MemoryLimit = n
			return a.runPrune(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&grace, "grace", repo.DefaultPruneGrace, "leave unreferenced packs younger than this (0: none)")
	f.Float64Var(&opts.MaxUnusedFraction, "max-unused", repo.DefaultMaxUnusedFraction, "repack a pack when more than this fraction of it is unused")
	f.BoolVarP(&opts.DryRun, "dry-run", "n", false, "show what would be done")
	f.StringVar(&memory, "max-memory", fmt.Sprintf("%dMiB", repo.DefaultPruneMemory>>20), "bound each of prune's blob sets to this size (e.g. 512MiB); past it prune keeps a few unused blobs")
	return cmd
}

func (a *app) runPrune(cmd *cobra.Command, opts repo.PruneOptions) error {
	ctx := cmd.Context()
	r, err := a.openRepo(ctx)
	if err != nil {
		return err
	}
	defer a.printRequests()
	res, err := r.Prune(ctx, opts)
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(res)
	}
	verb := "freed"
	if res.DryRun {
		verb = "would free"
	}
	a.printf("%s %s: deleted %d packs (%d unindexed), repacked %d, index files %d -> %d; %d packs left\n",
		verb, units.Bytes(res.BytesFreed), res.PacksDeleted, res.UnindexedDeleted, res.PacksRepacked,
		res.IndexFilesBefore, res.IndexFilesAfter, res.PacksAfter)
	if res.UploadsAborted > 0 {
		a.printf("aborted %d incomplete pack uploads left by killed writers\n", res.UploadsAborted)
	}
	if res.PacksWaiting > 0 {
		a.printf("%d condemned packs (%s) wait for %d writers that started before they were marked; the next prune deletes them\n",
			res.PacksWaiting, units.Bytes(res.BytesWaiting), len(res.LeasesBlocking))
	}
	return nil
}
