package main

import "github.com/spf13/cobra"

func (a *app) verifyCommand() *cobra.Command { return &cobra.Command{Use: "verify"} }
func (a *app) forgetCommand() *cobra.Command { return &cobra.Command{Use: "forget"} }
func (a *app) pruneCommand() *cobra.Command  { return &cobra.Command{Use: "prune"} }
