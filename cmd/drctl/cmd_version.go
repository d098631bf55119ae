package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/repo"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := "devel"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"version": v, "go": runtime.Version(), "repository_format": repo.FormatVersion})
			}
			fmt.Fprintf(a.stdout, "drctl %s (%s, repository format %d)\n", v, runtime.Version(), repo.FormatVersion)
			return nil
		},
	}
}
