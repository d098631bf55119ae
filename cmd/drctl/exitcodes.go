package main

import (
	"context"
	"errors"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/recovery/failover"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// Exit codes, documented in docs/exit-codes.md. Scripts and cron jobs
// depend on them: never renumber.
const (
	exitOK           = 0
	exitError        = 1   // anything not listed below
	exitUsage        = 2   // bad flags or arguments, invalid config file
	exitDamaged      = 3   // verify found damage, or data read back was wrong
	exitNoRepository = 10  // no repository at the location
	exitExists       = 11  // init: a repository already exists there
	exitPassword     = 12  // wrong password, or none given
	exitUnreachable  = 13  // target unreachable after retries
	exitAccess       = 14  // credentials refused, or bucket missing
	exitNoSnapshot   = 15  // the snapshot asked for does not exist
	exitFenced       = 16  // another site owns the VM (failed over)
	exitPrimaryAlive = 17  // failover refused: the primary sent a heartbeat within the lease
	exitUnhealthy    = 18  // failover: a replica failed its health checks
	exitCancelled    = 130 // interrupted (Ctrl-C, SIGTERM)
)

// usageError marks a mistake in how drctl was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func exitCode(ctx context.Context, err error) int {
	var ue usageError
	var fe *config.FieldError
	var alive *failover.PrimaryAliveError
	var planErr *failover.PlanError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitCancelled
	case errors.As(err, &ue), errors.As(err, &fe), errors.Is(err, config.ErrNoRepository):
		return exitUsage
	case errors.Is(err, repo.ErrWrongPassword), errors.Is(err, errNoPassword):
		return exitPassword
	case errors.Is(err, repo.ErrNoRepository):
		return exitNoRepository
	case errors.Is(err, repo.ErrAlreadyInitialised):
		return exitExists
	case errors.Is(err, repo.ErrNoSnapshot):
		return exitNoSnapshot
	case errors.As(err, &planErr):
		return exitUsage
	case errors.Is(err, fence.ErrFenced):
		return exitFenced
	case errors.As(err, &alive):
		return exitPrimaryAlive
	case errors.Is(err, failover.ErrUnhealthy):
		return exitUnhealthy
	case errors.Is(err, targets.ErrAccessDenied), errors.Is(err, targets.ErrNoBucket):
		return exitAccess
	case targets.IsTransient(err):
		return exitUnreachable
	case errors.Is(err, repo.ErrDamaged):
		return exitDamaged
	}
	return exitError
}
