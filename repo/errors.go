// Package repo is the repository format on a target: configuration and
// keys, the blob store (packs and index files), snapshot manifests with
// paged disk maps, verification and pruning. See docs/format.md.
package repo

import "errors"

// Errors a user can act on. The CLI maps them to exit codes.
var (
	ErrNoRepository       = errors.New("no repository here")
	ErrAlreadyInitialised = errors.New("a repository already exists here")
	ErrWrongPassword      = errors.New("wrong password")
	ErrNoSnapshot         = errors.New("no such snapshot")
	ErrDamaged            = errors.New("repository data is damaged")
	ErrUnsupported        = errors.New("repository format not supported by this drctl")
	// ErrLeaseLost: a writer could not renew its lease in time, so a prune
	// may already treat it as dead; it must not commit.
	ErrLeaseLost = errors.New("writer lease lost")
	// ErrPruneRunning: another prune holds a lease on the repository.
	ErrPruneRunning = errors.New("another prune is running")
)
