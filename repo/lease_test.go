package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// blobData is the content of data blob number seed: 16 KiB that do not
// compress, the same for the same seed.
func blobData(seed uint64) []byte {
	b := make([]byte, 16<<10)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0x1e}).Read(b)
	return b
}

// fillSnap saves the data blobs of seeds and a map page through w and
// returns the manifest of a one-disk snapshot of vm that uses them.
func fillSnap(ctx context.Context, r *repo.Repository, w *repo.Writer, vm string, seeds []uint64) (*repo.Snapshot, error) {
	var exts []repo.Extent
	var off int64
	for _, s := range seeds {
		b := blobData(s)
		id, _, err := w.Save(ctx, chunk.DataBlob, b)
		if err != nil {
			return nil, err
		}
		exts = append(exts, repo.Extent{Off: off, Len: int64(len(b)), Blob: id})
		off += int64(len(b))
	}
	page, _, err := w.Save(ctx, chunk.MetaBlob, repo.EncodeMapPage(exts, 0))
	if err != nil {
		return nil, err
	}
	cfg := r.Config()
	d := repo.Disk{Name: "d0", Size: off, PageSize: cfg.PageSize, BlockSize: cfg.BlockSize,
		Pages: []repo.PageRef{{Map: page, Allocated: off}}, Allocated: off, ChangeSource: "full"}
	return &repo.Snapshot{ID: repo.NewSnapshotID(), VM: vm, Time: time.Now().UTC(), Writer: r.WriterID(),
		Consistency: repo.ConsistencyNone, Disks: []repo.Disk{d}}, nil
}

// saveSnap is a whole replication through the Writer: lease, blobs,
// Close, Commit.
func saveSnap(ctx context.Context, r *repo.Repository, vm string, seeds []uint64) (*repo.Snapshot, error) {
	w, err := r.NewWriter(ctx, "test "+vm)
	if err != nil {
		return nil, err
	}
	s, err := fillSnap(ctx, r, w, vm, seeds)
	if err != nil {
		w.Abort()
		return nil, err
	}
	if err := w.Close(ctx); err != nil {
		return nil, err
	}
	if err := w.Commit(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// readSnap reads every blob a snapshot uses. A handle's cached index may
// point at a copy a prune has just removed while another copy stays, so
// a miss reloads the index and tries again before it counts.
func readSnap(ctx context.Context, r *repo.Repository, s *repo.Snapshot) error {
	var err error
	for range 3 {
		if err = readSnapOnce(ctx, r, s); err == nil {
			return nil
		}
		if _, rerr := r.RefreshIndex(ctx); rerr != nil {
			return rerr
		}
	}
	return err
}

func readSnapOnce(ctx context.Context, r *repo.Repository, s *repo.Snapshot) error {
	for _, d := range s.Disks {
		for p, ref := range d.Pages {
			start := int64(p) * d.PageSize
			exts, err := r.LoadMapPage(ctx, ref, start, min(start+d.PageSize, d.Size))
			if err != nil {
				return fmt.Errorf("snapshot %s disk %s: %w", s.ID, d.Name, err)
			}
			for _, e := range exts {
				if _, err := r.LoadBlob(ctx, e.Blob); err != nil {
					return fmt.Errorf("snapshot %s disk %s at %d: %w", s.ID, d.Name, e.Off, err)
				}
			}
		}
	}
	return nil
}

// readAll reads every snapshot in the repository through a new handle.
func readAll(t *testing.T, tg targets.Target) int {
	t.Helper()
	ctx := context.Background()
	r := openRepo(t, tg)
	refs, err := r.ListSnapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		s, err := r.LoadSnapshot(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := readSnapOnce(ctx, r, s); err != nil {
			t.Fatal(err)
		}
	}
	return len(refs)
}

func verifyClean(t *testing.T, tg targets.Target) *repo.VerifyReport {
	t.Helper()
	rep, err := openRepo(t, tg).Verify(context.Background(), repo.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v\n%s", err, rep.Summary())
	}
	return rep
}

func blobID(r *repo.Repository, seed uint64) chunk.ID { return r.Codec().BlobID(blobData(seed)) }

func withTTL(ttl time.Duration) repo.Options {
	o := testOpts
	o.LeaseTTL = ttl
	return o
}

// clockTarget stamps the objects written through it with the time of a
// clock the test moves, as a target's own clock would.
type clockTarget struct {
	targets.Target
	mu     sync.Mutex
	offset time.Duration
	mod    map[string]time.Time
}

func newClockTarget(t targets.Target) *clockTarget {
	return &clockTarget{Target: t, mod: map[string]time.Time{}}
}

func (c *clockTarget) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func (c *clockTarget) stamp(oi targets.ObjectInfo, err error) (targets.ObjectInfo, error) {
	if err != nil {
		return oi, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	oi.ModTime = time.Now().Add(c.offset)
	c.mod[oi.Key] = oi.ModTime
	return oi, nil
}

func (c *clockTarget) fix(oi targets.ObjectInfo) targets.ObjectInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.mod[oi.Key]; ok {
		oi.ModTime = m
	}
	return oi
}

func (c *clockTarget) Put(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return c.stamp(c.Target.Put(ctx, key, data))
}

func (c *clockTarget) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	return c.stamp(c.Target.PutIfAbsent(ctx, key, data))
}

func (c *clockTarget) PutIfMatch(ctx context.Context, key string, data []byte, etag string) (targets.ObjectInfo, error) {
	return c.stamp(c.Target.PutIfMatch(ctx, key, data, etag))
}

func (c *clockTarget) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	data, oi, err := c.Target.Get(ctx, key)
	return data, c.fix(oi), err
}

func (c *clockTarget) Stat(ctx context.Context, key string) (targets.ObjectInfo, error) {
	oi, err := c.Target.Stat(ctx, key)
	return c.fix(oi), err
}

func (c *clockTarget) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	return c.Target.List(ctx, prefix, func(oi targets.ObjectInfo) error { return fn(c.fix(oi)) })
}

// leaseObjects returns the lease objects and their content.
func leaseObjects(t *testing.T, tg targets.Target) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	ctx := context.Background()
	err := tg.List(ctx, "leases/", func(oi targets.ObjectInfo) error {
		data, _, err := tg.Get(ctx, oi.Key)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		out[oi.Key] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLeaseLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context, r *repo.Repository, w *repo.Writer) error
		want int // snapshots committed
	}{
		{"commit", func(ctx context.Context, r *repo.Repository, w *repo.Writer) error {
			s, err := fillSnap(ctx, r, w, "vm1", []uint64{1})
			if err != nil {
				return err
			}
			if err := w.Close(ctx); err != nil {
				return err
			}
			return w.Commit(ctx, s)
		}, 1},
		{"close then release", func(ctx context.Context, r *repo.Repository, w *repo.Writer) error {
			if err := w.Close(ctx); err != nil {
				return err
			}
			return w.Release(ctx)
		}, 0},
		{"abort", func(ctx context.Context, r *repo.Repository, w *repo.Writer) error {
			w.Abort()
			w.Abort()
			return nil
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mt := memtarget.New()
			initRepo(t, mt)
			r, err := repo.Open(ctx, mt, testPassword, withTTL(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			w, err := r.NewWriter(ctx, "test lifecycle")
			if err != nil {
				t.Fatal(err)
			}
			leases := leaseObjects(t, mt)
			l, ok := leases["leases/"+w.LeaseID()]
			if len(leases) != 1 || !ok {
				t.Fatalf("leases %v, want one for %s", leases, w.LeaseID())
			}
			if l["writer"] != r.WriterID() || l["purpose"] != "test lifecycle" || l["pid"] != float64(os.Getpid()) || l["started"] == "" {
				t.Fatalf("lease content %v", l)
			}
			first, _ := mt.Stat(ctx, "leases/"+w.LeaseID())
			// Renewed every 100 ms: after 250 ms the target has a newer copy.
			time.Sleep(250 * time.Millisecond)
			renewed, err := mt.Stat(ctx, "leases/"+w.LeaseID())
			if err != nil || !renewed.ModTime.After(first.ModTime) {
				t.Fatalf("lease not renewed: %v → %v (%v)", first.ModTime, renewed.ModTime, err)
			}
			if err := tc.end(ctx, r, w); err != nil {
				t.Fatal(err)
			}
			if n := len(leaseObjects(t, mt)); n != 0 {
				t.Fatalf("%d leases left", n)
			}
			if refs, _ := r.ListSnapshots(ctx, ""); len(refs) != tc.want {
				t.Fatalf("%d snapshots, want %d", len(refs), tc.want)
			}
			// Nothing renews a released lease.
			time.Sleep(150 * time.Millisecond)
			if n := len(leaseObjects(t, mt)); n != 0 {
				t.Fatalf("%d leases back after release", n)
			}
		})
	}
}

// TestLeaseLost: a writer that cannot renew its lease stops, and will not
// commit: a prune may already count it as dead.
func TestLeaseLost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *targets.Faulty, mt *memtarget.Target, key string)
	}{
		{"renewals fail", func(f *targets.Faulty, _ *memtarget.Target, _ string) {
			f.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfMatch}, KeyPrefix: "leases/"})
		}},
		{"lease removed", func(_ *targets.Faulty, mt *memtarget.Target, key string) {
			mt.Delete(context.Background(), key)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mt := memtarget.New()
			f := targets.NewFaulty(mt)
			initRepo(t, mt)
			r, err := repo.Open(ctx, f, testPassword, withTTL(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			w, err := r.NewWriter(ctx, "test")
			if err != nil {
				t.Fatal(err)
			}
			s, err := fillSnap(ctx, r, w, "vm1", []uint64{1, 2})
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(f, mt, "leases/"+w.LeaseID())
			time.Sleep(450 * time.Millisecond)
			if _, _, err := w.Save(ctx, chunk.DataBlob, blobData(3)); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("save after the lease was lost: %v", err)
			}
			if err := w.Close(ctx); !errors.Is(err, repo.ErrLeaseLost) {
				t.Fatalf("close after the lease was lost: %v", err)
			}
			if err := w.Commit(ctx, s); err == nil {
				t.Fatal("committed without a lease")
			}
			if refs, _ := r.ListSnapshots(ctx, ""); len(refs) != 0 {
				t.Fatalf("%d snapshots committed", len(refs))
			}
		})
	}
}
