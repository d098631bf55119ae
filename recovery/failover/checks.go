package failover

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/recovery/health"
	"github.com/drctl/drctl/recovery/plan"
)

// healthCheck converts a plan's check for the health package.
func healthCheck(c plan.HealthCheck) (health.Check, error) {
	hc := health.Check{Name: c.Name, Kind: c.Kind, Addr: c.Addr, Command: c.Command, Timeout: c.Timeout, Interval: c.Interval}
	if c.Kind == plan.CheckSerial {
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return hc, fmt.Errorf("check %s: %w", c.Name, err)
		}
		hc.Pattern = re
	}
	return hc, nil
}

// checkPrimaries refuses to fail over while a primary is alive, unless
// forced.
func checkPrimaries(ctx context.Context, fences *fence.Store, targets []*target, opts Options) error {
	var alive []fence.Heartbeat
	for _, tg := range targets {
		h, err := fences.FreshPrimary(ctx, tg.pv.VM, opts.Site, opts.Plan.Lease)
		if err != nil {
			return err
		}
		if h != nil {
			alive = append(alive, *h)
		}
	}
	if len(alive) == 0 {
		return nil
	}
	if !opts.Force {
		return &PrimaryAliveError{Alive: alive, Lease: opts.Plan.Lease, Now: time.Now()}
	}
	for _, h := range alive {
		opts.Logger.Warn("failing over although the primary sent a heartbeat recently (--force)", "vm", h.VM, "site", h.Site, "heartbeat", h.Time)
	}
	return nil
}
