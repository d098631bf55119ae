package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"time"

	"github.com/drctl/drctl/repo"
)

// Disk names one disk of a VM to replicate.
type Disk struct {
	Name string // defaults to the base name of Path
	Path string // image file or block device
}

// Options describe one replication.
type Options struct {
	VM    string
	Disks []Disk
	// AllowShrink accepts a disk smaller than in the parent snapshot; by
	// default that is refused, since a truncated image is more likely a
	// mistake than a resize.
	AllowShrink bool
	Host        string
	Tags        []string
	Consistency string // default repo.ConsistencyNone
	Hardware    *repo.Hardware
	// Workers compress and encrypt in parallel (default GOMAXPROCS).
	Workers  int
	Counters *Counters
	Logger   *slog.Logger
}

// Run replicates the VM's disks as one snapshot, incremental against the
// VM's latest snapshot. Nothing is committed unless every disk was stored:
// on error the repository may hold unreferenced packs, never a partial
// snapshot.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*repo.Snapshot, error) {
	start := time.Now()
	if opts.Counters == nil {
		opts.Counters = &Counters{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Consistency == "" {
		opts.Consistency = repo.ConsistencyNone
	}
	if !repo.NameRE.MatchString(opts.VM) {
		return nil, fmt.Errorf("vm name %q: use letters, digits, '.', '_' and '-'", opts.VM)
	}
	if len(opts.Disks) == 0 {
		return nil, fmt.Errorf("vm %s: no disks given (use --disk PATH or list them in the config)", opts.VM)
	}

	parent, err := r.LatestSnapshot(ctx, opts.VM)
	if err != nil {
		return nil, fmt.Errorf("find parent snapshot of %s: %w", opts.VM, err)
	}

	jobs, err := openDisks(opts, parent)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, j := range jobs {
			j.src.Close()
		}
	}()
	for _, j := range jobs {
		opts.Counters.BytesTotal.Add(j.size)
	}

	w, err := r.NewWriter(ctx)
	if err != nil {
		return nil, err
	}
	snap := &repo.Snapshot{
		ID: repo.NewSnapshotID(), VM: opts.VM, Time: time.Now().UTC(),
		Writer: r.WriterID(), Host: opts.Host, Consistency: opts.Consistency,
		Hardware: opts.Hardware, Tags: opts.Tags,
	}
	if parent != nil {
		snap.Parent = parent.ID
	}
	for _, j := range jobs {
		j.r, j.w, j.counters, j.log, j.workers = r, w, opts.Counters, opts.Logger, opts.Workers
		d, err := j.run(ctx)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("replicate disk %s of %s: %w", j.name, opts.VM, err)
		}
		opts.Logger.Debug("disk scanned", "vm", opts.VM, "disk", j.name, "change_source", d.ChangeSource, "allocated", d.Allocated)
		snap.Disks = append(snap.Disks, d)
	}
	if err := w.Close(ctx); err != nil {
		return nil, fmt.Errorf("replicate %s: %w", opts.VM, err)
	}
	ws := w.Stats()
	snap.Stats = repo.SnapshotStats{
		BytesRead:    opts.Counters.BytesRead.Load(),
		BytesChanged: opts.Counters.BytesChanged.Load(),
		BytesNew:     ws.BytesNew,
		BytesStored:  ws.BytesStored,
		BlobsNew:     ws.BlobsNew,
		DurationSecs: time.Since(start).Seconds(),
	}
	opts.Counters.BytesNew.Store(ws.BytesNew)
	opts.Counters.BytesStored.Store(ws.BytesStored)
	if err := r.SaveSnapshot(ctx, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

func openDisks(opts Options, parent *repo.Snapshot) ([]*diskJob, error) {
	var jobs []*diskJob
	closeAll := func() {
		for _, j := range jobs {
			j.src.Close()
		}
	}
	names := map[string]bool{}
	for _, d := range opts.Disks {
		name := d.Name
		if name == "" {
			name = filepath.Base(d.Path)
		}
		if !repo.NameRE.MatchString(name) {
			closeAll()
			return nil, fmt.Errorf("disk name %q (from %s): use letters, digits, '.', '_' and '-'; set a name explicitly", name, d.Path)
		}
		if names[name] {
			closeAll()
			return nil, fmt.Errorf("two disks of vm %s are named %q: give them distinct names", opts.VM, name)
		}
		names[name] = true
		src, err := openFileSource(d.Path)
		if err != nil {
			closeAll()
			return nil, err
		}
		size := src.Size()
		j := &diskJob{name: name, src: src, size: size, changeSource: "full"}
		if parent != nil {
			for i := range parent.Disks {
				if parent.Disks[i].Name == name {
					j.parent = &parent.Disks[i]
				}
			}
		}
		if j.parent != nil {
			j.changeSource = "scan"
		}
		if j.parent != nil && size < j.parent.Size && !opts.AllowShrink {
			src.Close()
			closeAll()
			return nil, fmt.Errorf("disk %s (%s) is %d bytes, smaller than the %d bytes in snapshot %s: refusing to replicate a possibly truncated disk (pass --allow-shrink if it really shrank)",
				name, d.Path, size, j.parent.Size, parent.ID)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}
