package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/drctl/drctl/internal/qga"
	"github.com/drctl/drctl/internal/qmp"
	"github.com/drctl/drctl/repo"
)

// QEMU names a running QEMU VM to snapshot through its QMP socket.
type QEMU struct {
	// QMPSocket is a QMP unix socket reserved for drctl (QEMU accepts
	// several -qmp options; one socket serves one client at a time).
	QMPSocket string
	// QGASocket, if set, is the host side of the VM's guest agent channel:
	// the guest's file systems are frozen for the instant of the snapshot
	// (application-consistent). If freezing fails the snapshot is taken
	// anyway and recorded as crash-consistent.
	QGASocket string
	// FreezeTimeout bounds the freeze (default 10 s): a guest whose
	// applications cannot quiesce in time is snapshotted unfrozen.
	FreezeTimeout time.Duration
	// WorkDir holds the scratch overlays and the NBD socket of a snapshot
	// (default: the system temp dir). Scratch files grow only by what the
	// guest overwrites while the snapshot is read.
	WorkDir string
}

// Object names drctl gives its QEMU objects, so that a later run can find
// and remove what a killed run left behind.
const (
	qemuPrefix     = "drctl-"
	bitmapPrefix   = "drctl-"
	bitmapGranular = 4096
	teardownTime   = 30 * time.Second
)

// qemuDisk is one disk of the VM during a snapshot.
type qemuDisk struct {
	name     string // disk name in the manifest
	node     string // the live format node
	driver   string // qcow2, raw, …
	bus      string // virtio, ide, scsi, … (from the device model)
	serial   string // guest-visible serial
	size     int64
	parent   *repo.Disk
	old      string // usable bitmap recording changes since the parent ("" = none)
	newBm    string // bitmap created at this snapshot's instant
	note     string // why the old bitmap could not be used
	fleece   string // scratch node: the point-in-time view
	scratch  string // its file
	jobID    string
	exportID string
}

// qemuSession is one snapshot of a VM: setup, the consistent instant, the
// NBD exports, and teardown.
type qemuSession struct {
	c     *qmp.Client
	vm    string
	dir   string
	sock  string
	disks []*qemuDisk
	log   *slog.Logger
	nbdUp bool
	// blocks is query-block at open, for the hardware spec.
	blocks []qmp.BlockInfo
	// frozen: the guest's file systems were frozen at the instant.
	frozen bool
}

// diskName derives a stable disk name from what QEMU reports: the legacy
// drive id, else the device id of -device …,id=X, else the node name.
func diskName(b qmp.BlockInfo) string {
	if b.Device != "" {
		return b.Device
	}
	if q := strings.TrimPrefix(b.QDev, "/machine/peripheral/"); q != b.QDev {
		id, _, _ := strings.Cut(q, "/")
		return id
	}
	if b.QDev != "" {
		return filepath.Base(b.QDev)
	}
	return b.Inserted.NodeName
}

// diskBus guesses the bus from the device path QEMU reports: virtio-blk
// devices own a "virtio-backend" child.
func diskBus(qdev string) string {
	switch {
	case strings.HasSuffix(qdev, "/virtio-backend"):
		return "virtio"
	case strings.Contains(qdev, "ide"):
		return "ide"
	case strings.Contains(qdev, "scsi"):
		return "scsi"
	}
	return ""
}

// openQEMU connects and lists the VM's disks.
func openQEMU(ctx context.Context, q *QEMU, vm string, parent *repo.Snapshot, snapID string, log *slog.Logger) (*qemuSession, error) {
	c, err := qmp.Dial(ctx, q.QMPSocket)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", vm, err)
	}
	s := &qemuSession{c: c, vm: vm, log: log}
	if err := s.cleanLeftovers(ctx); err != nil {
		c.Close()
		return nil, err
	}
	blocks, err := c.QueryBlock(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("vm %s: list disks: %w", vm, err)
	}
	nodes, err := c.QueryNamedBlockNodes(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("vm %s: list block nodes: %w", vm, err)
	}
	s.blocks = blocks
	byNode := map[string]qmp.BlockDeviceInfo{}
	for _, n := range nodes {
		byNode[n.NodeName] = n
	}
	for i, b := range blocks {
		if b.Inserted == nil || b.Inserted.NodeName == "" || b.Inserted.ReadOnly {
			continue // empty drives, CD-ROMs, read-only media
		}
		n := byNode[b.Inserted.NodeName]
		d := &qemuDisk{
			name: diskName(b), node: n.NodeName, driver: n.Driver, size: n.Image.VirtualSize, bus: diskBus(b.QDev),
			newBm:    bitmapPrefix + snapID,
			fleece:   fmt.Sprintf("%sfleece%d", qemuPrefix, i),
			jobID:    fmt.Sprintf("%sjob%d", qemuPrefix, i),
			exportID: fmt.Sprintf("%sexp%d", qemuPrefix, i),
		}
		if !repo.NameRE.MatchString(d.name) {
			d.name = fmt.Sprintf("disk%d", i)
		}
		if b.QDev != "" {
			_ = c.QOMGet(ctx, b.QDev, "serial", &d.serial)
		}
		if parent != nil {
			for k := range parent.Disks {
				if parent.Disks[k].Name == d.name {
					d.parent = &parent.Disks[k]
				}
			}
		}
		s.disks = append(s.disks, d)
	}
	if len(s.disks) == 0 {
		c.Close()
		return nil, fmt.Errorf("vm %s has no writable disks", vm)
	}
	return s, nil
}

// usableBitmap decides whether the bitmap named in the parent snapshot can
// drive an incremental, and says why not.
func usableBitmap(d *qemuDisk, n qmp.BlockDeviceInfo) (string, string) {
	if d.parent == nil {
		return "", ""
	}
	want := d.parent.Bitmap
	if want == "" {
		return "", "the parent snapshot recorded no dirty bitmap: full read, compared with the parent"
	}
	for _, b := range n.DirtyBitmaps {
		if b.Name != want {
			continue
		}
		switch {
		case b.Inconsistent:
			return "", "dirty bitmap " + want + " is inconsistent (QEMU stopped uncleanly): full read, compared with the parent"
		case b.Busy:
			return "", "dirty bitmap " + want + " is busy (in use by another job): full read, compared with the parent"
		case !b.Recording:
			return "", "dirty bitmap " + want + " is not recording: full read, compared with the parent"
		}
		return want, ""
	}
	return "", "dirty bitmap " + want + " is missing (the VM restarted without persistent bitmaps?): full read, compared with the parent"
}

// cleanLeftovers removes exports, the NBD server, jobs and scratch nodes a
// killed run left behind, and folds leftover bitmaps back (see
// foldBitmaps), so that this run starts from a clean VM.
func (s *qemuSession) cleanLeftovers(ctx context.Context) error {
	exports, err := s.c.QueryBlockExports(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: list exports: %w", s.vm, err)
	}
	for _, e := range exports {
		if strings.HasPrefix(e.ID, qemuPrefix) {
			s.log.Warn("removing an export left by an interrupted snapshot", "vm", s.vm, "export", e.ID)
			_ = s.c.BlockExportDelWait(ctx, e.ID)
		}
	}
	if len(exports) > 0 {
		_ = s.c.NBDServerStop(ctx)
	}
	jobs, err := s.c.QueryBlockJobs(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: list block jobs: %w", s.vm, err)
	}
	for _, j := range jobs {
		if strings.HasPrefix(j.Device, qemuPrefix) {
			s.log.Warn("cancelling a job left by an interrupted snapshot", "vm", s.vm, "job", j.Device)
			_, _ = s.c.BlockJobCancelWait(ctx, j.Device, true)
		}
	}
	nodes, err := s.c.QueryNamedBlockNodes(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: list block nodes: %w", s.vm, err)
	}
	for _, n := range nodes {
		if strings.HasPrefix(n.NodeName, qemuPrefix+"fleece") && !strings.Contains(n.NodeName, "-file") {
			_ = s.c.BlockdevDel(ctx, n.NodeName)
			_ = s.c.BlockdevDel(ctx, n.NodeName+"-file")
		}
	}
	return nil
}

// foldBitmaps makes each disk's bitmaps consistent with the latest
// committed snapshot: the bitmap it names (want) records everything since
// then. Bitmaps of snapshots that never committed are merged into it and
// removed, and it is re-enabled.
func (s *qemuSession) foldBitmaps(ctx context.Context, node, want string, all []qmp.BlockDirtyInfo) {
	var others []string
	found := false
	for _, b := range all {
		switch {
		case b.Name == want:
			found = true
		case strings.HasPrefix(b.Name, bitmapPrefix):
			others = append(others, b.Name)
		}
	}
	if !found {
		for _, o := range others {
			_ = s.c.BitmapRemove(ctx, node, o)
		}
		return
	}
	acts := []qmp.Action{qmp.BitmapEnableAction(node, want)}
	if len(others) > 0 {
		acts = append(acts, qmp.BitmapMergeAction(node, want, others))
		for _, o := range others {
			acts = append(acts, qmp.BitmapRemoveAction(node, o))
		}
	}
	if err := s.c.Transaction(ctx, acts); err != nil {
		s.log.Warn("could not fold leftover bitmaps", "vm", s.vm, "node", node, "err", err)
	}
}

// prepare sets up, takes the consistent instant (one transaction over all
// disks) and exports the frozen views over NBD.
func (s *qemuSession) prepare(ctx context.Context, q *QEMU) error {
	if err := s.setup(ctx, q); err != nil {
		return err
	}
	if err := s.takeInstant(ctx, q); err != nil {
		return err
	}
	return s.export(ctx)
}

// setup folds leftover bitmaps, decides per disk between incremental and
// full read, and creates the scratch overlays.
func (s *qemuSession) setup(ctx context.Context, q *QEMU) error {
	workDir := q.WorkDir
	if workDir == "" {
		workDir = os.TempDir()
	}
	nodes, err := s.c.QueryNamedBlockNodes(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: list block nodes: %w", s.vm, err)
	}
	for _, d := range s.disks {
		for _, n := range nodes {
			if n.NodeName == d.node {
				want := ""
				if d.parent != nil {
					want = d.parent.Bitmap
				}
				s.foldBitmaps(ctx, d.node, want, n.DirtyBitmaps)
			}
		}
	}
	// Re-read: folding may have made an inconsistent state usable.
	if nodes, err = s.c.QueryNamedBlockNodes(ctx); err != nil {
		return fmt.Errorf("vm %s: list block nodes: %w", s.vm, err)
	}
	for _, d := range s.disks {
		for _, n := range nodes {
			if n.NodeName == d.node {
				d.old, d.note = usableBitmap(d, n)
				for _, b := range n.DirtyBitmaps {
					// An unusable bitmap of ours only blocks the new one.
					if strings.HasPrefix(b.Name, bitmapPrefix) && b.Name != d.old {
						_ = s.c.BitmapRemove(ctx, d.node, b.Name)
					}
				}
			}
		}
	}

	if s.dir, err = os.MkdirTemp(workDir, "drctl-snap-"); err != nil {
		return fmt.Errorf("vm %s: make work dir: %w", s.vm, err)
	}
	for _, d := range s.disks {
		d.scratch = filepath.Join(s.dir, d.fleece+".qcow2")
		out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", d.scratch, fmt.Sprint(d.size)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("create scratch overlay for %s: %w: %s", d.name, err, out)
		}
		if err := s.c.BlockdevAdd(ctx, map[string]any{"driver": "file", "filename": d.scratch, "node-name": d.fleece + "-file"}); err != nil {
			return fmt.Errorf("vm %s: add scratch file for %s: %w", s.vm, d.name, err)
		}
		if err := s.c.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "node-name": d.fleece, "file": d.fleece + "-file", "backing": d.node}); err != nil {
			return fmt.Errorf("vm %s: add scratch overlay for %s: %w", s.vm, d.name, err)
		}
	}
	return nil
}

// takeInstant runs the snapshot transaction: copy-before-write starts on
// every disk, the new bitmaps start recording and the old ones freeze,
// all at once.
func (s *qemuSession) takeInstant(ctx context.Context, q *QEMU) error {
	var acts []qmp.Action
	for _, d := range s.disks {
		acts = append(acts,
			qmp.BlockdevBackupAction(d.node, d.fleece, qmp.SyncNone, d.jobID),
			qmp.BitmapAddAction(d.node, d.newBm, d.driver == "qcow2", bitmapGranular, false))
		if d.old != "" {
			acts = append(acts, qmp.BitmapDisableAction(d.node, d.old))
		}
	}
	if err := s.instant(ctx, q, acts); err != nil {
		return fmt.Errorf("vm %s: snapshot transaction: %w", s.vm, err)
	}
	return nil
}

// export serves the frozen views and bitmaps over NBD.
func (s *qemuSession) export(ctx context.Context) error {
	s.sock = filepath.Join(s.dir, "nbd.sock")
	if err := s.c.NBDServerStart(ctx, s.sock); err != nil {
		return fmt.Errorf("vm %s: start NBD server: %w", s.vm, err)
	}
	s.nbdUp = true
	for _, d := range s.disks {
		var bitmaps []string
		if d.old != "" {
			bitmaps = []string{d.old}
		}
		if err := s.c.BlockExportAdd(ctx, d.exportID, d.fleece, false, bitmaps); err != nil {
			return fmt.Errorf("vm %s: export %s: %w", s.vm, d.name, err)
		}
	}
	return nil
}

// teardown removes exports, the NBD server, jobs and scratch nodes. It runs
// on its own context so that it happens after a cancel too.
func (s *qemuSession) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTime)
	defer cancel()
	for _, d := range s.disks {
		if s.nbdUp {
			_ = s.c.BlockExportDelWait(ctx, d.exportID)
		}
	}
	if s.nbdUp {
		_ = s.c.NBDServerStop(ctx)
	}
	for _, d := range s.disks {
		_, _ = s.c.BlockJobCancelWait(ctx, d.jobID, true)
		_ = s.c.BlockdevDel(ctx, d.fleece)
		_ = s.c.BlockdevDel(ctx, d.fleece+"-file")
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// finish drops the old bitmaps once the snapshot is committed; on failure
// it folds the new bitmaps back into the old ones, so no change is lost.
func (s *qemuSession) finish(committed bool) {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTime)
	defer cancel()
	for _, d := range s.disks {
		var acts []qmp.Action
		switch {
		case committed && d.old != "":
			acts = []qmp.Action{qmp.BitmapRemoveAction(d.node, d.old)}
		case !committed && d.old != "":
			acts = []qmp.Action{
				qmp.BitmapEnableAction(d.node, d.old),
				qmp.BitmapMergeAction(d.node, d.old, []string{d.newBm}),
				qmp.BitmapRemoveAction(d.node, d.newBm),
			}
		case !committed:
			acts = []qmp.Action{qmp.BitmapRemoveAction(d.node, d.newBm)}
		}
		if len(acts) == 0 {
			continue
		}
		if err := s.c.Transaction(ctx, acts); err != nil && !errors.Is(err, qmp.ErrClosed) {
			s.log.Warn("could not update dirty bitmaps after the snapshot", "vm", s.vm, "disk", d.name, "err", err)
		}
	}
}

// instant runs the snapshot transaction, inside a guest file-system freeze
// when a guest agent is configured. The thaw runs on its own context right
// after the transaction, whatever happened: a guest must never stay frozen.
func (s *qemuSession) instant(ctx context.Context, q *QEMU, acts []qmp.Action) error {
	if q.QGASocket == "" {
		return s.c.Transaction(ctx, acts)
	}
	timeout := q.FreezeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	agent, err := qga.Dial(fctx, q.QGASocket)
	if err != nil {
		s.log.Warn("guest agent unavailable: snapshot is crash-consistent", "vm", s.vm, "err", err)
		return s.c.Transaction(ctx, acts)
	}
	defer agent.Close()
	if _, err := agent.Freeze(fctx); err != nil {
		s.log.Warn("could not freeze the guest's file systems: snapshot is crash-consistent", "vm", s.vm, "err", err)
		thawQuietly(agent)
		return s.c.Transaction(ctx, acts)
	}
	err = s.c.Transaction(ctx, acts)
	thawed := thawQuietly(agent)
	if !thawed {
		s.log.Error("could not thaw the guest's file systems: check the guest", "vm", s.vm)
	}
	s.frozen = err == nil && thawed
	return err
}

// thawQuietly thaws on its own short context and reports success.
func thawQuietly(agent *qga.Client) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := agent.Thaw(ctx)
	return err == nil
}
