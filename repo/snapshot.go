package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/targets"
)

// Consistency kinds recorded in a manifest.
const (
	// ConsistencyNone: an image file or device read while it may change;
	// consistent only if the caller quiesced it.
	ConsistencyNone  = "none"
	ConsistencyCrash = "crash-consistent"
	ConsistencyApp   = "app-consistent"
)

// Snapshot is one recovery point of one VM: a manifest with all its disks.
// Writing it (create-only) is the commit point of a replication.
type Snapshot struct {
	Version     int           `json:"version"`
	ID          string        `json:"id"`
	VM          string        `json:"vm"`
	Time        time.Time     `json:"time"`
	Parent      string        `json:"parent,omitempty"`
	Writer      string        `json:"writer"`
	Host        string        `json:"host,omitempty"`
	Consistency string        `json:"consistency"`
	Hardware    *Hardware     `json:"hardware,omitempty"`
	Disks       []Disk        `json:"disks"`
	Stats       SnapshotStats `json:"stats"`
	Tags        []string      `json:"tags,omitempty"`
}

// Hardware is the VM's virtual hardware, so the recovery side can boot it.
type Hardware struct {
	CPUs int `json:"cpus,omitempty"`
	// CPUModel is QEMU's -cpu model, e.g. "host", "max", "Skylake-Server".
	CPUModel  string `json:"cpu_model,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
	Firmware  string `json:"firmware,omitempty"` // bios | uefi
	// Machine is the versioned machine type, e.g. "pc-i440fx-7.2", so a
	// newer QEMU at the recovery site presents the same hardware.
	Machine string `json:"machine,omitempty"`
	// Kernel, Initrd and Append are set for VMs that QEMU boots directly
	// (-kernel): paths on the primary host, which the recovery site must
	// also have (or the recovery plan overrides).
	Kernel string   `json:"kernel,omitempty"`
	Initrd string   `json:"initrd,omitempty"`
	Append string   `json:"append,omitempty"`
	NICs   []NIC    `json:"nics,omitempty"`
	Extra  []string `json:"extra,omitempty"`
}

// NIC is one virtual network card.
type NIC struct {
	// ID is the device id (-device …,id=ID), if it had one.
	ID    string `json:"id,omitempty"`
	MAC   string `json:"mac,omitempty"`
	Model string `json:"model,omitempty"` // e.g. virtio-net-pci, e1000
	// Network is the source network, the QEMU netdev id; recovery plans
	// map it to a network at the recovery site.
	Network string `json:"network,omitempty"`
}

// Disk is one disk of a snapshot.
type Disk struct {
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	Bus    string `json:"bus,omitempty"`
	// Serial is the guest-visible disk serial, kept on the replica:
	// guests name disks by it (/dev/disk/by-id).
	Serial    string    `json:"serial,omitempty"`
	Format    string    `json:"format,omitempty"`
	Size      int64     `json:"size"`
	PageSize  int64     `json:"page_size"`
	BlockSize int       `json:"block_size"`
	Pages     []PageRef `json:"pages"`
	Allocated int64     `json:"allocated"` // bytes mapped to data
	// ChangeSource says how changes were found: "full" (no parent),
	// "scan" (read everything, compare block digests) or "bitmap".
	ChangeSource string `json:"change_source"`
	// Note explains a fallback, e.g. why a bitmap could not be used.
	Note string `json:"note,omitempty"`
	// Bitmap names the live VM's dirty bitmap that records the changes
	// since this snapshot; the next snapshot reads only what it marks.
	Bitmap string `json:"bitmap,omitempty"`
	// Node is the QEMU block node the disk was read from.
	Node string `json:"node,omitempty"`
}

// SnapshotStats record the work a replication did.
type SnapshotStats struct {
	BytesRead     int64   `json:"bytes_read"`
	BytesChanged  int64   `json:"bytes_changed"`
	BytesNew      int64   `json:"bytes_new"`
	BytesStored   int64   `json:"bytes_stored"`
	BlobsNew      int64   `json:"blobs_new"`
	DurationSecs  float64 `json:"duration_seconds"`
	BytesUploaded int64   `json:"bytes_uploaded,omitempty"`
}

// SnapshotRef is what a snapshot's object name tells without reading it.
type SnapshotRef struct {
	VM   string    `json:"vm"`
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Key  string    `json:"-"`
}

const snapshotTimeFormat = "20060102T150405.000000000Z"

// NameRE is what VM and disk names must match: they become parts of object
// names and file names.
var NameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// NewSnapshotID makes a random snapshot id.
func NewSnapshotID() string { return randomHex(8) }

func snapshotKey(s *Snapshot) string {
	return snapshotPrefix + s.VM + "/" + s.Time.UTC().Format(snapshotTimeFormat) + "-" + s.ID
}

func parseSnapshotKey(key string) (SnapshotRef, bool) {
	rest, ok := strings.CutPrefix(key, snapshotPrefix)
	if !ok {
		return SnapshotRef{}, false
	}
	vm, name, ok := strings.Cut(rest, "/")
	if !ok || !NameRE.MatchString(vm) {
		return SnapshotRef{}, false
	}
	ts, id, ok := strings.Cut(name, "-")
	if !ok || len(id) != 16 {
		return SnapshotRef{}, false
	}
	t, err := time.Parse(snapshotTimeFormat, ts)
	if err != nil {
		return SnapshotRef{}, false
	}
	return SnapshotRef{VM: vm, ID: id, Time: t, Key: key}, true
}

// SaveSnapshot commits a manifest with a create-only put. The blobs it
// references must already be durable and indexed (Writer.Close).
func (r *Repository) SaveSnapshot(ctx context.Context, s *Snapshot) error {
	if !NameRE.MatchString(s.VM) {
		return fmt.Errorf("vm name %q: use letters, digits, '.', '_' and '-'", s.VM)
	}
	s.Version = FormatVersion
	plain, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	key := snapshotKey(s)
	if _, err := r.target.PutIfAbsent(ctx, key, r.codec.Seal(plain)); err != nil {
		return fmt.Errorf("commit snapshot %s: %w", s.ID, err)
	}
	return nil
}

// ListSnapshots lists snapshot refs (of one VM, or all when vm is ""),
// oldest first.
func (r *Repository) ListSnapshots(ctx context.Context, vm string) ([]SnapshotRef, error) {
	prefix := snapshotPrefix
	if vm != "" {
		prefix += vm + "/"
	}
	var out []SnapshotRef
	err := r.target.List(ctx, prefix, func(oi targets.ObjectInfo) error {
		if ref, ok := parseSnapshotKey(oi.Key); ok {
			out = append(out, ref)
		} else {
			r.log.Warn("ignoring an object with a foreign name under snapshots/", "key", oi.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// LoadSnapshot reads and decrypts one manifest.
func (r *Repository) LoadSnapshot(ctx context.Context, ref SnapshotRef) (*Snapshot, error) {
	sealed, _, err := r.target.Get(ctx, ref.Key)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s of %s: %w", ref.ID, ref.VM, err)
	}
	plain, err := r.codec.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s of %s: %w: %w", ref.ID, ref.VM, ErrDamaged, err)
	}
	var s Snapshot
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("snapshot %s of %s: parse: %w: %w", ref.ID, ref.VM, ErrDamaged, err)
	}
	if s.ID != ref.ID || s.VM != ref.VM {
		return nil, fmt.Errorf("snapshot object %s holds snapshot %s of %s: %w", ref.Key, s.ID, s.VM, ErrDamaged)
	}
	if s.Version != FormatVersion {
		return nil, fmt.Errorf("snapshot %s has format version %d: %w", s.ID, s.Version, ErrUnsupported)
	}
	return &s, nil
}

// LoadSnapshots reads many manifests concurrently, in the order given.
func (r *Repository) LoadSnapshots(ctx context.Context, refs []SnapshotRef) ([]*Snapshot, error) {
	out := make([]*Snapshot, len(refs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for i, ref := range refs {
		g.Go(func() error {
			s, err := r.LoadSnapshot(gctx, ref)
			out[i] = s
			return err
		})
	}
	return out, g.Wait()
}

// FindSnapshot resolves "latest" or a unique id prefix, optionally within
// one VM.
func (r *Repository) FindSnapshot(ctx context.Context, vm, id string) (*Snapshot, error) {
	refs, err := r.ListSnapshots(ctx, vm)
	if err != nil {
		return nil, err
	}
	where := "in the repository"
	if vm != "" {
		where = "of vm " + vm
	}
	if id == "latest" || id == "" {
		if len(refs) == 0 {
			return nil, fmt.Errorf("no snapshots %s: %w", where, ErrNoSnapshot)
		}
		return r.LoadSnapshot(ctx, refs[len(refs)-1])
	}
	var match []SnapshotRef
	for _, ref := range refs {
		if strings.HasPrefix(ref.ID, id) {
			match = append(match, ref)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("snapshot %q %s: %w (see drctl snapshots)", id, where, ErrNoSnapshot)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot id prefix %q is ambiguous (%d matches): give more digits", id, len(match))
}

// LatestSnapshot returns the newest snapshot of vm, or nil if it has none.
func (r *Repository) LatestSnapshot(ctx context.Context, vm string) (*Snapshot, error) {
	s, err := r.FindSnapshot(ctx, vm, "latest")
	if errors.Is(err, ErrNoSnapshot) {
		return nil, nil
	}
	return s, err
}

// DeleteSnapshot removes a manifest (forget). Its data stays until prune.
func (r *Repository) DeleteSnapshot(ctx context.Context, ref SnapshotRef) error {
	if err := r.target.Delete(ctx, ref.Key); err != nil {
		return fmt.Errorf("forget snapshot %s: %w", ref.ID, err)
	}
	return nil
}
