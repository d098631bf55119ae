package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/open"
)

// openTarget opens the storage named by rc, with retries. create is for
// init: it makes a missing local directory and checks that a bucket exists.
func (a *app) openTarget(ctx context.Context, rc config.Repository, create bool, log *slog.Logger) (targets.Target, error) {
	u, err := targets.ParseURL(rc.URL)
	if err != nil {
		return nil, usageError{err}
	}
	ro := targets.DefaultRetryOptions()
	ro.Logger = log
	if a.retries > 0 {
		ro.MaxAttempts = a.retries
	}
	opts := open.Options{
		AccessKey: rc.AccessKeyID, SecretKey: rc.SecretAccessKey, Region: rc.Region,
		Create: create, Retry: ro,
	}
	if l := rc.ObjectLock; l != nil {
		opts.ObjectLock = &targets.ObjectLock{Mode: l.Mode, Days: l.Days, Keys: targets.ImmutableRepoKey}
	}
	// Explicit config wins; the standard AWS variables fill what is unset.
	if opts.AccessKey == "" {
		opts.AccessKey, _ = a.lookupEnv("AWS_ACCESS_KEY_ID")
		opts.SecretKey, _ = a.lookupEnv("AWS_SECRET_ACCESS_KEY")
		opts.SessionToken, _ = a.lookupEnv("AWS_SESSION_TOKEN")
	}
	if opts.Region == "" {
		opts.Region, _ = a.lookupEnv("AWS_REGION")
	}
	t, err := open.Open(ctx, rc.URL, opts)
	if err != nil && u.Kind == targets.KindLocal && !create && errors.Is(err, targets.ErrNoBucket) {
		return nil, fmt.Errorf("directory %s does not exist: %w (create one with drctl init)", u.Path, repo.ErrNoRepository)
	}
	return t, err
}
