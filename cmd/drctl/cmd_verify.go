package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/repo"
)

func (a *app) verifyCommand() *cobra.Command {
	var readData bool
	var subset string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the repository's structure, and optionally its data",
		Long: `Check that every snapshot's manifest, map pages and blobs are present and
indexed, and that every indexed pack exists with its size. --read-data also
downloads every pack and checks every blob against its keyed hash;
--read-data-subset checks a share per run (e.g. 10% or 5G), continuing where the
previous run stopped, so that regular runs cover everything without paying the
egress of a full read each time. Damage is reported with the VMs, snapshots and
disks it affects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts := repo.VerifyOptions{ReadData: readData}
			if subset != "" {
				s, err := repo.ParseSubset(subset)
				if err != nil {
					return usageError{fmt.Errorf("--read-data-subset: %w", err)}
				}
				opts.Subset = s
			}
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			defer a.printRequests()
			id := r.Config().ID
			if !opts.Subset.IsZero() && !readData {
				if opts.Cursor, err = repo.LoadVerifyCursor(id); err != nil {
					a.log.Warn("starting the subset at the beginning", "err", err)
				}
			}
			rep, verr := r.Verify(ctx, opts)
			if rep == nil {
				return verr
			}
			if !opts.Subset.IsZero() && !readData && rep.Data.NextCursor != "" {
				if err := repo.SaveVerifyCursor(id, rep.Data.NextCursor); err != nil {
					a.log.Warn("could not save where the subset stopped", "err", err)
				}
			}
			if a.jsonOut {
				if err := a.printJSON(rep); err != nil {
					return err
				}
			} else if !a.quiet || !rep.OK() {
				if err := rep.WriteSummary(a.stdout); err != nil {
					return err
				}
			}
			if verr != nil && errors.Is(verr, repo.ErrDamaged) {
				return fmt.Errorf("verify found damage: %w", verr)
			}
			return verr
		},
	}
	f := cmd.Flags()
	f.BoolVar(&readData, "read-data", false, "download and check all data")
	f.StringVar(&subset, "read-data-subset", "", "download and check a share of the data per run: N%, 1/N, or a size like 2G")
	return cmd
}
