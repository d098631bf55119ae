package main

import (
	"github.com/spf13/cobra"
)

func (a *app) repairCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "repair", Short: "Repair a damaged repository"}
	var dryRun bool
	index := &cobra.Command{
		Use:   "index",
		Short: "Rebuild the index entries of damaged index files from the packs' own headers",
		Long: "Reads the header of every pack that no readable index file lists, writes a new index file for\n" +
			"them, and removes the damaged index files. Run it when verify reports an index file that cannot be\n" +
			"read; afterwards verify again. Safe while replications run.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := a.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			res, err := r.RepairIndex(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			verb := "indexed"
			if dryRun {
				verb = "would index"
			}
			a.printf("%d damaged index files; %s %d packs from their headers\n", len(res.BadIndexFiles), verb, res.PacksIndexed)
			for _, p := range res.BadPacks {
				a.printf("  pack %s has an unreadable header: its blobs are lost (drctl verify names the snapshots affected)\n", p)
			}
			return nil
		},
	}
	index.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be done")
	cmd.AddCommand(index)
	return cmd
}
