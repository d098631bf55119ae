package replicate

import (
	"context"
	"log/slog"
	"time"

	"github.com/drctl/drctl/internal/qmp"
)

// PauseFenced pauses a running VM that was found failed over to another
// site: a running old primary next to its replica is the split brain
// that fencing exists to prevent. It logs the outcome either way, and
// runs on its own short context (the caller's may be ending).
func PauseFenced(vm, qmpSocket string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, qmpSocket)
	if err == nil {
		defer c.Close()
		err = c.Stop(ctx)
	}
	if err != nil {
		log.Error("vm was failed over to another site but could not be paused: stop it by hand", "vm", vm, "err", err)
		return
	}
	log.Warn("vm paused: it was failed over to another site", "vm", vm)
}
