// Command drctl replicates VM disks to an offsite repository and restores
// them. See README.md for a tour and docs/ for the details.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdin, os.Stdout, os.Stderr, os.LookupEnv)
	err := app.execute(ctx, os.Args[1:])
	code := exitCode(ctx, err)
	if err != nil {
		app.printError(err, code)
	}
	stop()
	if code != 0 {
		os.Exit(code)
	}
	_ = fmt.Sprint()
}
