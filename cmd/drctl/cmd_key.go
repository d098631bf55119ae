package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/drctl/drctl/config"
)

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the passwords that open the repository",
	}
	var newPwFile, label string
	add := &cobra.Command{
		Use:   "add",
		Short: "Add a password (a new key file wrapping the same master key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			pw, err := a.newPassword(newPwFile)
			if err != nil {
				return err
			}
			id, err := r.AddKey(ctx, pw, label)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"message_type": "key_added", "id": id})
			}
			a.printf("added key %s\n", id)
			return nil
		},
	}
	add.Flags().StringVar(&newPwFile, "new-password-file", "", "read the new password from this file (env DRCTL_NEW_PASSWORD)")
	add.Flags().StringVar(&label, "label", "", "a note to tell the key apart (e.g. who holds it)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List key files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			keys, err := r.Keys(ctx)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(keys)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, " \tID\tCREATED\tLABEL")
			for _, k := range keys {
				cur := " "
				if k.Current {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, k.ID, k.Created.Local().Format("2006-01-02 15:04:05"), k.Label)
			}
			return tw.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a key file (not the one in use)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := a.openRepo(ctx)
			if err != nil {
				return err
			}
			id, err := r.RemoveKey(ctx, args[0])
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"message_type": "key_removed", "id": id})
			}
			a.printf("removed key %s\n", id)
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// newPassword reads the password for a new key.
func (a *app) newPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageError{fmt.Errorf("--new-password-file: %w", err)}
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if p, ok := a.lookupEnv("DRCTL_NEW_PASSWORD"); ok && p != "" {
		return p, nil
	}
	pw, err := a.password(config.Repository{URL: "the new key"}, true)
	if errors.Is(err, errNoPassword) {
		return "", usageError{errors.New("no new password: use --new-password-file or DRCTL_NEW_PASSWORD")}
	}
	return pw, err
}
