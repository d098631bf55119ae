package replicate

import (
	"context"
	"fmt"

	"github.com/drctl/drctl/internal/nbd"
)

// nbdSource reads a live VM's point-in-time view of one disk over NBD:
// only the ranges its dirty bitmap marks (incremental), or everything not
// known to be zero (full read).
type nbdSource struct {
	c       *nbd.Client
	name    string
	ranges  [][2]int64
	changes bool // ranges are a dirty bitmap's: gaps are unchanged
}

func (s *nbdSource) Size() int64         { return s.c.Size() }
func (s *nbdSource) GapsUnchanged() bool { return s.changes }
func (s *nbdSource) Describe() string    { return s.name }
func (s *nbdSource) Close() error        { return s.c.Close() }

func (s *nbdSource) Ranges(context.Context) ([][2]int64, error) { return s.ranges, nil }

func (s *nbdSource) ReadAt(ctx context.Context, p []byte, off int64) error {
	n := min(int64(len(p)), max(0, s.c.Size()-off))
	if err := s.c.ReadAt(ctx, p[:n], off); err != nil {
		return fmt.Errorf("read %s at %d over NBD: %w", s.name, off, err)
	}
	clear(p[n:])
	return nil
}

// openNBDSource connects to one export. With bitmap set, the source reads
// the bitmap's dirty ranges; otherwise all data.
func openNBDSource(ctx context.Context, socket, export, name, bitmap string) (*nbdSource, error) {
	contexts := []string{nbd.ContextBaseAllocation}
	if bitmap != "" {
		contexts = append(contexts, nbd.DirtyBitmapContext(bitmap))
	}
	c, err := nbd.Dial(ctx, "unix", socket, export, nbd.Options{MetaContexts: contexts})
	if err != nil {
		return nil, fmt.Errorf("connect to the NBD export of %s: %w", name, err)
	}
	s := &nbdSource{c: c, name: name, changes: bitmap != ""}
	var rs []nbd.Range
	if bitmap != "" {
		rs, err = c.DirtyExtents(ctx, nbd.DirtyBitmapContext(bitmap))
	} else {
		var a nbd.Allocation
		a, err = c.AllocatedExtents(ctx)
		rs = a.Data
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("map of %s: %w", name, err)
	}
	for _, r := range rs {
		s.ranges = append(s.ranges, [2]int64{r.Off, r.End()})
	}
	return s, nil
}
