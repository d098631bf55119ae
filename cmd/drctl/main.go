// Command drctl replicates VM disks to an offsite repository and restores
// them. See README.md for a tour and docs/ for the details.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// Most of drctl's heap is pooled buffers that stay live; the default
	// GOGC of 100 would let the heap grow to twice that. A lower target
	// costs little CPU because the pools keep the allocation rate low.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(10)
	}
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
}
