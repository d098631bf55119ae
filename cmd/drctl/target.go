package main

import (
	"context"
	"log/slog"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

// openTarget opens the storage named by rc. create makes a missing local
// directory (init); buckets are never created.
func openTarget(ctx context.Context, rc config.Repository, create bool, log *slog.Logger) (targets.Target, error) {
	u, err := targets.ParseURL(rc.URL)
	if err != nil {
		return nil, usageError{err}
	}
	var t targets.Target
	if create {
		t, err = local.Create(u.Path)
	} else {
		t, err = local.New(u.Path)
	}
	if err != nil {
		return nil, err
	}
	_ = ctx
	return targets.NewRetry(t, targets.DefaultRetryOptions()), nil
}
