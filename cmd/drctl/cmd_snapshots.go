package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/internal/units"
)

func (a *app) snapshotsCommand() *cobra.Command {
	var vm string
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List recovery points",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer a.printRequests()
			refs, err := r.ListSnapshots(ctx, vm)
			if err != nil {
				return err
			}
			snaps, err := r.LoadSnapshots(ctx, refs)
			if err != nil {
				return err
			}
			if a.jsonOut {
				type disk struct {
					Name         string `json:"name"`
					Size         int64  `json:"size"`
					Allocated    int64  `json:"allocated"`
					ChangeSource string `json:"change_source"`
					Note         string `json:"note,omitempty"`
				}
				type row struct {
					ID          string    `json:"id"`
					VM          string    `json:"vm"`
					Time        time.Time `json:"time"`
					Parent      string    `json:"parent,omitempty"`
					Host        string    `json:"host,omitempty"`
					Consistency string    `json:"consistency"`
					Disks       []disk    `json:"disks"`
					Tags        []string  `json:"tags,omitempty"`
					Stats       any       `json:"stats"`
				}
				out := []row{}
				for _, s := range snaps {
					rw := row{ID: s.ID, VM: s.VM, Time: s.Time, Parent: s.Parent, Host: s.Host, Consistency: s.Consistency, Tags: s.Tags, Stats: s.Stats}
					for _, d := range s.Disks {
						rw.Disks = append(rw.Disks, disk{d.Name, d.Size, d.Allocated, d.ChangeSource, d.Note})
					}
					out = append(out, rw)
				}
				return a.printJSON(out)
			}
			if len(snaps) == 0 {
				a.printf("no snapshots\n")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVM\tTIME\tAGE\tDISKS\tSIZE\tNEW\tCONSISTENCY")
			for _, s := range snaps {
				var size int64
				for _, d := range s.Disks {
					size += d.Size
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.ID[:8], s.VM, s.Time.Local().Format("2006-01-02 15:04:05"),
					fmtAge(time.Since(s.Time)), len(s.Disks), units.Bytes(size), units.Bytes(s.Stats.BytesStored), s.Consistency)
				for _, d := range s.Disks {
					if d.Note != "" {
						fmt.Fprintf(tw, "\t\tdisk %s: %s\t\t\t\t\t\n", d.Name, d.Note)
					}
				}
			}
			if !a.quiet {
				tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vm, "vm", "", "only this VM")
	return cmd
}

func fmtAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
