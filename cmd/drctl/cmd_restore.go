package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/internal/units"
	"github.com/drctl/drctl/recovery"
)

func (a *app) restoreCommand() *cobra.Command {
	var vm, snapID, target, format string
	var overwrite bool
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Write a VM's disks at a recovery point",
		Long: `Restore every disk of a VM's snapshot into a directory, as DIR/<disk name>
(sparse raw files, or qcow2 with --format qcow2), plus DIR/<vm>.json with the
VM's hardware and disk list. Every block is checked against its keyed hash:
restore never writes data it could not verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if vm == "" || target == "" {
				return usageError{fmt.Errorf("--vm and --target are required")}
			}
			if format != "raw" && format != "qcow2" {
				return usageError{fmt.Errorf("--format %q: use raw or qcow2", format)}
			}
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer a.printRequests()
			snap, err := r.FindSnapshot(ctx, vm, snapID)
			if err != nil {
				return err
			}
			start := time.Now()
			c := &recovery.RestoreCounters{}
			stop := a.startProgress(ctx, "restore "+vm, func() progressState {
				return progressState{total: c.BytesTotal.Load(), done: c.BytesWritten.Load(),
					fields: []progressField{{"fetched", c.BytesFetched.Load()}}}
			})
			err = recovery.RestoreSnapshot(ctx, r, snap, target, recovery.RestoreOptions{
				Overwrite: overwrite, Format: format, Counters: c, Logger: a.log,
			})
			stop()
			if err != nil {
				return err
			}
			el := time.Since(start)
			if a.jsonOut {
				return a.printJSON(map[string]any{
					"message_type": "summary", "snapshot_id": snap.ID, "vm": snap.VM, "target": target,
					"bytes_written": c.BytesWritten.Load(), "bytes_fetched": c.BytesFetched.Load(),
					"requests": a.requestCount(), "duration_seconds": el.Seconds(),
				})
			}
			a.printf("restored snapshot %s of %s (%s) to %s: %s written, %s fetched in %s\n",
				snap.ID[:8], snap.VM, snap.Time.Local().Format("2006-01-02 15:04:05"), target,
				units.Bytes(c.BytesWritten.Load()), units.Bytes(c.BytesFetched.Load()), el.Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&vm, "vm", "", "the VM to restore (required)")
	f.StringVar(&snapID, "snapshot", "latest", "snapshot id (or unique prefix), or latest")
	f.StringVar(&target, "target", "", "directory to write the disks into (required)")
	f.StringVar(&format, "format", "raw", "disk format: raw or qcow2")
	f.BoolVar(&overwrite, "overwrite", false, "replace existing files in the target directory")
	return cmd
}
