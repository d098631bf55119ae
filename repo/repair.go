package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// RepairResult says what RepairIndex found and did.
type RepairResult struct {
	DryRun bool `json:"dry_run"`
	// BadIndexFiles could not be read; they are removed once the packs
	// they may have listed are indexed again.
	BadIndexFiles []string `json:"bad_index_files"`
	// PacksIndexed were in no readable index file: their headers were
	// read and a new index file lists them.
	PacksIndexed int `json:"packs_indexed"`
	// BadPacks have a header that cannot be read: their blobs are lost;
	// verify names the snapshots that need them.
	BadPacks   []string `json:"bad_packs,omitempty"`
	IndexFiles []string `json:"index_files_written,omitempty"`
}

// RepairIndex rebuilds the index entries that damaged index files took
// away: every pack that no readable index file lists has its header read
// (two small range reads; the header is authenticated) and is indexed
// again; then the damaged index files are removed. Safe while others
// write: a running writer's not yet indexed pack only gets indexed a
// little early, and nothing is deleted that a readable file still needs.
func (r *Repository) RepairIndex(ctx context.Context, dryRun bool) (RepairResult, error) {
	res := RepairResult{DryRun: dryRun}
	fi, bad, err := r.loadFullIndex(ctx, nil)
	if err != nil {
		return res, err
	}
	for _, b := range bad {
		res.BadIndexFiles = append(res.BadIndexFiles, b.key)
	}
	packs, _, err := r.listPacks(ctx)
	if err != nil {
		return res, err
	}
	var missing []chunk.ID
	for id := range packs {
		if fi.packs[id] == nil {
			missing = append(missing, id)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].String() < missing[j].String() })
	found := make([]*chunk.IndexPack, len(missing))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for i, id := range missing {
		g.Go(func() error {
			ip, err := r.readPackIndex(gctx, id)
			switch {
			case errors.Is(err, targets.ErrNotFound):
				return nil // deleted by a prune meanwhile
			case errors.Is(err, chunk.ErrCorruptPack), errors.Is(err, chunk.ErrAuth):
				return nil // reported below
			case err != nil:
				return fmt.Errorf("read the header of pack %s: %w", id.Short(), err)
			}
			found[i] = &ip
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("repair index: %w", err)
	}
	var indexed []chunk.IndexPack
	for i, ip := range found {
		if ip == nil {
			if _, err := r.target.Stat(ctx, PackKey(missing[i])); err == nil {
				res.BadPacks = append(res.BadPacks, missing[i].String())
			}
			continue
		}
		indexed = append(indexed, *ip)
	}
	res.PacksIndexed = len(indexed)
	if dryRun {
		return res, nil
	}
	if len(indexed) > 0 {
		if res.IndexFiles, _, err = r.writeIndexFiles(ctx, indexed, DefaultBlobsPerIndexFile); err != nil {
			return res, fmt.Errorf("repair index: %w", err)
		}
	}
	// Only now, with every existing pack listed by a readable file, do
	// the damaged files go.
	for _, k := range res.BadIndexFiles {
		if err := r.target.Delete(ctx, k); err != nil {
			return res, fmt.Errorf("repair index: remove damaged %s: %w", k, err)
		}
	}
	r.ReloadIndex()
	return res, nil
}
