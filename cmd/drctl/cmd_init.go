package main

import (
	"github.com/spf13/cobra"

	"github.com/drctl/drctl/repo"
)

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create an encrypted repository",
		Long: `Create a new repository at the location given with -r (a directory, which is
created, or an S3 bucket, which must exist). The password protects the master
key: without it, nobody can read the repository, including you.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			rc, err := a.repository()
			if err != nil {
				return err
			}
			t, err := a.target(ctx, rc, true)
			if err != nil {
				return err
			}
			pw, err := a.password(rc, true)
			if err != nil {
				return err
			}
			r, err := repo.Init(ctx, t, pw, a.repoOptions())
			if err != nil {
				return err
			}
			defer a.printRequests()
			if a.jsonOut {
				return a.printJSON(map[string]any{"message_type": "init", "repository": t.String(), "id": r.Config().ID})
			}
			a.printf("created repository %s at %s\n", r.Config().ID[:8], t)
			a.printf("keep the password safe: the data cannot be read without it\n")
			return nil
		},
	}
}
