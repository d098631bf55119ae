package replicate

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/drctl/drctl/chunk"
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
	// QEMU, when set, takes the disks from a running QEMU VM instead of
	// Disks.
	QEMU *QEMU
	// Fence, when set, is asked before reading and again right before the
	// commit whether Site still owns the VM: after a failover to another
	// site nothing more is committed here.
	Fence Fencer
	Site  string
	// StallTimeout abandons the run with ErrStalled when it makes no
	// progress for this long (0: DefaultStallTimeout; negative: never).
	StallTimeout time.Duration
	// Workers compress and encrypt in parallel (default GOMAXPROCS).
	Workers  int
	Counters *Counters
	Logger   *slog.Logger
}

// Fencer says whether a site may still commit snapshots of a VM (the fence
// package implements it): an error stops the replication uncommitted.
type Fencer interface {
	CheckCommit(ctx context.Context, vm, site string) error
}

func (o *Options) checkFence(ctx context.Context) error {
	if o.Fence == nil {
		return nil
	}
	return o.Fence.CheckCommit(ctx, o.VM, o.Site)
}

// Run replicates the VM's disks as one snapshot, incremental against the
// VM's latest snapshot. Nothing is committed unless every disk was stored:
// on error the repository may hold unreferenced packs, never a partial
// snapshot.
func Run(ctx context.Context, r *repo.Repository, opts Options) (_ *repo.Snapshot, err error) {
	start := time.Now()
	opts.fill()
	ctx, stop := watchStall(ctx, opts.StallTimeout, opts.Counters.progress)
	defer stop()
	defer func() { err = stalled(ctx, err) }()
	if !repo.NameRE.MatchString(opts.VM) {
		return nil, fmt.Errorf("vm name %q: use letters, digits, '.', '_' and '-'", opts.VM)
	}
	if len(opts.Disks) == 0 && opts.QEMU == nil {
		return nil, fmt.Errorf("vm %s: no disks given (use --disk PATH or list them in the config)", opts.VM)
	}

	if err := opts.checkFence(ctx); err != nil {
		return nil, err
	}
	parent, err := r.LatestSnapshot(ctx, opts.VM)
	if err != nil {
		return nil, fmt.Errorf("find parent snapshot of %s: %w", opts.VM, err)
	}
	snap := newSnapshot(r, opts, parent)
	if opts.QEMU != nil {
		return runQEMU(ctx, r, opts, parent, snap, start)
	}
	jobs, err := openDisks(ctx, r, opts, parent)
	if err != nil {
		return nil, err
	}
	defer closeJobs(jobs)
	return store(ctx, r, opts, snap, jobs, start)
}

// runQEMU snapshots a running VM: one consistent instant over all its
// disks, then only the changed blocks (or, where a bitmap cannot be
// trusted, everything, compared with the parent).
func runQEMU(ctx context.Context, r *repo.Repository, opts Options, parent, snap *repo.Snapshot, start time.Time) (_ *repo.Snapshot, err error) {
	sess, err := openQEMU(ctx, opts.QEMU, opts.VM, parent, snap.ID, opts.Logger)
	if err != nil {
		return nil, err
	}
	defer sess.c.Close()
	var jobs []*diskJob
	defer func() {
		closeJobs(jobs) // NBD clients first: an export in use cannot go
		sess.teardown()
		sess.finish(err == nil)
	}()
	if err := sess.prepare(ctx, opts.QEMU); err != nil {
		return nil, err
	}
	if jobs, err = sessionJobs(ctx, r, sess, opts, snap); err != nil {
		return nil, err
	}
	return store(ctx, r, opts, snap, jobs, start)
}

// sessionJobs fills in what the instant decided and opens one NBD source
// per disk.
func sessionJobs(ctx context.Context, r *repo.Repository, sess *qemuSession, opts Options, snap *repo.Snapshot) ([]*diskJob, error) {
	snap.Time = time.Now().UTC()
	snap.Consistency = repo.ConsistencyCrash
	if sess.frozen {
		snap.Consistency = repo.ConsistencyApp
	}
	snap.Hardware = mergeHardware(readHardware(ctx, sess.c, sess.blocks), opts.Hardware)
	ix, err := parentIndex(ctx, r, slices.ContainsFunc(sess.disks, func(d *qemuDisk) bool { return d.parent != nil }))
	if err != nil {
		return nil, err
	}
	var jobs []*diskJob
	for _, d := range sess.disks {
		if d.parent != nil {
			if why := parentUnreadable(ix, d.parent); why != "" {
				// The new bitmap was created at the instant either way:
				// a full read now is complete.
				d.parent, d.old, d.note = nil, "", why
			}
		}
		src, err := openNBDSource(ctx, sess.sock, d.fleece, d.name, d.old)
		if err != nil {
			closeJobs(jobs)
			return nil, fmt.Errorf("vm %s: %w", opts.VM, err)
		}
		j := &diskJob{name: d.name, src: src, size: src.Size(), parent: d.parent,
			changeSource: "full", note: d.note, bitmap: d.newBm, node: d.node, format: d.driver, bus: d.bus, serial: d.serial}
		switch {
		case d.old != "":
			j.changeSource = "bitmap"
		case d.parent != nil:
			j.changeSource = "scan"
			opts.Logger.Warn("disk read in full", "vm", opts.VM, "disk", d.name, "reason", d.note)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// RunGroup snapshots the running VMs of a consistency group at one
// instant: every VM that is running is paused, each VM's snapshot
// transaction runs, and all are resumed (on their own context, whatever
// happened), so that no VM writes between the first instant and the last.
// The pause lasts a few QMP round trips per VM. Guest agents are not used
// in a group (a paused guest cannot freeze): group snapshots are
// crash-consistent. Each VM gets its own manifest, tagged with the group
// and a shared group id; the manifests are committed one after the other.
func RunGroup(ctx context.Context, r *repo.Repository, group string, members []Options) (_ []*repo.Snapshot, err error) {
	start := time.Now()
	members = slices.Clone(members)
	for i := range members {
		members[i].fill()
	}
	if len(members) > 0 {
		var stop func()
		ctx, stop = watchStall(ctx, members[0].StallTimeout, func() (n int64) {
			for _, o := range members {
				n += o.Counters.progress()
			}
			return n
		})
		defer stop()
		defer func() { err = stalled(ctx, err) }()
	}
	gid := repo.NewSnapshotID()
	type member struct {
		opts Options
		snap *repo.Snapshot
		sess *qemuSession
		jobs []*diskJob
		ok   bool
	}
	ms := make([]*member, len(members))
	defer func() {
		for _, m := range ms {
			if m == nil || m.sess == nil {
				continue
			}
			closeJobs(m.jobs)
			m.sess.teardown()
			m.sess.finish(m.ok)
			m.sess.c.Close()
		}
	}()
	seen := map[string]bool{}
	for i, o := range members {
		if !repo.NameRE.MatchString(o.VM) || seen[o.VM] {
			return nil, fmt.Errorf("group %s: vm name %q is invalid or given twice", group, o.VM)
		}
		seen[o.VM] = true
		if o.QEMU == nil {
			return nil, fmt.Errorf("group %s: vm %s has no QMP socket: a consistency group needs running VMs", group, o.VM)
		}
		if err := o.checkFence(ctx); err != nil {
			return nil, fmt.Errorf("group %s: %w", group, err)
		}
		o.Tags = append(o.Tags, "group="+group, "group-id="+gid)
		parent, err := r.LatestSnapshot(ctx, o.VM)
		if err != nil {
			return nil, fmt.Errorf("find parent snapshot of %s: %w", o.VM, err)
		}
		m := &member{opts: o, snap: newSnapshot(r, o, parent)}
		ms[i] = m
		if m.sess, err = openQEMU(ctx, o.QEMU, o.VM, parent, m.snap.ID, o.Logger); err != nil {
			return nil, err
		}
		if err := m.sess.setup(ctx, o.QEMU); err != nil {
			return nil, err
		}
	}
	sessions := make([]*qemuSession, len(ms))
	for i, m := range ms {
		sessions[i] = m.sess
	}
	if err := groupInstant(ctx, ms[0].opts.Logger, group, sessions); err != nil {
		return nil, err
	}
	instant := time.Now().UTC()
	for _, m := range ms {
		if err := m.sess.export(ctx); err != nil {
			return nil, err
		}
		if m.jobs, err = sessionJobs(ctx, r, m.sess, m.opts, m.snap); err != nil {
			return nil, err
		}
		m.snap.Time = instant
	}
	var out []*repo.Snapshot
	for _, m := range ms {
		s, err := store(ctx, r, m.opts, m.snap, m.jobs, start)
		if err != nil {
			return out, fmt.Errorf("group %s: %w", group, err)
		}
		m.ok = true
		out = append(out, s)
	}
	return out, nil
}

// groupInstant pauses the running VMs, takes each one's instant and
// resumes them.
func groupInstant(ctx context.Context, log *slog.Logger, group string, sessions []*qemuSession) error {
	var paused []*qemuSession
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), teardownTime)
		defer cancel()
		for _, s := range paused {
			if err := s.c.Cont(rctx); err != nil {
				log.Error("could not resume a VM after the group snapshot: resume it by hand", "group", group, "vm", s.vm, "err", err)
			}
		}
	}()
	for _, s := range sessions {
		st, err := s.c.QueryStatus(ctx)
		if err != nil {
			return fmt.Errorf("vm %s: query status: %w", s.vm, err)
		}
		if st.Running {
			if err := s.c.Stop(ctx); err != nil {
				return fmt.Errorf("vm %s: pause for the group instant: %w", s.vm, err)
			}
			paused = append(paused, s)
		}
	}
	for _, s := range sessions {
		if err := s.takeInstant(ctx, &QEMU{}); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) fill() {
	if o.Counters == nil {
		o.Counters = &Counters{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Consistency == "" {
		o.Consistency = repo.ConsistencyNone
	}
	switch {
	case o.StallTimeout == 0:
		o.StallTimeout = DefaultStallTimeout
	case o.StallTimeout < 0:
		o.StallTimeout = 0
	}
}

// newSnapshot starts the manifest of a snapshot of o.VM.
func newSnapshot(r *repo.Repository, o Options, parent *repo.Snapshot) *repo.Snapshot {
	snap := &repo.Snapshot{
		ID: repo.NewSnapshotID(), VM: o.VM, Time: time.Now().UTC(),
		Writer: r.WriterID(), Host: o.Host, Consistency: o.Consistency,
		Hardware: o.Hardware, Tags: o.Tags,
	}
	if parent != nil {
		snap.Parent = parent.ID
	}
	return snap
}

// parentIndex is a fresh index when there is a parent whose map pages
// must be found in it (need), else nil.
func parentIndex(ctx context.Context, r *repo.Repository, need bool) (*chunk.Index, error) {
	if !need {
		return nil, nil
	}
	ix, err := r.RefreshIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the repository index: %w", err)
	}
	return ix, nil
}

func closeJobs(jobs []*diskJob) {
	for _, j := range jobs {
		j.src.Close()
	}
}

// store runs the disk jobs into one writer and commits the manifest.
func store(ctx context.Context, r *repo.Repository, opts Options, snap *repo.Snapshot, jobs []*diskJob, start time.Time) (*repo.Snapshot, error) {
	for _, j := range jobs {
		opts.Counters.BytesTotal.Add(j.size)
	}
	w, err := r.NewWriter(ctx, "replicate "+opts.VM)
	if err != nil {
		return nil, err
	}
	defer mirrorStored(opts.Counters, func() int64 { return w.Stats().BytesStored })()
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
	// Checked again at the last moment: a failover may have happened
	// while the disks were read. (One that lands between this check and
	// the commit is harmless: it pinned its recovery point already.)
	if err := opts.checkFence(ctx); err != nil {
		w.Abort()
		return nil, err
	}
	// Commit writes the manifest while the writer's lease still keeps
	// prune from deleting what it deduplicated against, then releases it.
	if err := w.Commit(ctx, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

func openDisks(ctx context.Context, r *repo.Repository, opts Options, parent *repo.Snapshot) ([]*diskJob, error) {
	ix, err := parentIndex(ctx, r, parent != nil)
	if err != nil {
		return nil, err
	}
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
			if why := parentUnreadable(ix, j.parent); why != "" {
				opts.Logger.Warn("disk read in full without its parent", "vm", opts.VM, "disk", name, "reason", why)
				j.parent, j.changeSource, j.note = nil, "full", why
			}
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
