package repo_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

const testPassword = "correct horse"

var testOpts = repo.Options{KDF: repo.FastKDF, Downloads: 4, Uploads: 2}

func initRepo(t *testing.T, tg targets.Target) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), tg, testPassword, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openRepo(t *testing.T, tg targets.Target) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), tg, testPassword, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fixture builds real repositories: image files replicated with
// replicate.Run, and the content of every disk at every snapshot, so that
// restores can be compared byte for byte.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	mt   *memtarget.Target
	tg   targets.Target // what the repository handle talks to (mt, or a wrapper)
	r    *repo.Repository
	dir  string
	want map[string]map[string][]byte // snapshot id → disk name → content
}

func newFixture(t *testing.T) *fixture {
	mt := memtarget.New()
	return newFixtureOn(t, mt, mt)
}

func newFixtureOn(t *testing.T, mt *memtarget.Target, tg targets.Target) *fixture {
	t.Helper()
	return &fixture{t: t, ctx: context.Background(), mt: mt, tg: tg, r: initRepo(t, tg), dir: t.TempDir(), want: map[string]map[string][]byte{}}
}

func (f *fixture) path(disk string) string { return filepath.Join(f.dir, disk) }

// disk creates an image: random data with a hole and a run of text.
func (f *fixture) disk(name string, size int, seed uint64) {
	f.t.Helper()
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	if size > 1<<20 {
		clear(b[size/2 : size/2+256<<10])
		copy(b[size/4:], bytes.Repeat([]byte("all work and no play "), 8192))
	}
	if err := os.WriteFile(f.path(name), b, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// change overwrites n bytes at off with new random data.
func (f *fixture) change(name string, off, n int, seed uint64) {
	f.t.Helper()
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xcc}).Read(b)
	fh, err := os.OpenFile(f.path(name), os.O_RDWR, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(b, int64(off)); err != nil {
		f.t.Fatal(err)
	}
}

// snap replicates the named disks as one snapshot of vm.
func (f *fixture) snap(vm string, disks ...string) *repo.Snapshot {
	f.t.Helper()
	opts := replicate.Options{VM: vm}
	want := map[string][]byte{}
	for _, d := range disks {
		opts.Disks = append(opts.Disks, replicate.Disk{Name: d, Path: f.path(d)})
		b, err := os.ReadFile(f.path(d))
		if err != nil {
			f.t.Fatal(err)
		}
		want[d] = b
	}
	s, err := replicate.Run(f.ctx, f.r, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.want[s.ID] = want
	return s
}

// restoreAll restores every snapshot in the repository through a new
// handle and compares it with what was replicated.
func (f *fixture) restoreAll() int {
	f.t.Helper()
	r := openRepo(f.t, f.tg)
	refs, err := r.ListSnapshots(f.ctx, "")
	if err != nil {
		f.t.Fatal(err)
	}
	for _, ref := range refs {
		want, ok := f.want[ref.ID]
		if !ok {
			continue
		}
		s, err := r.LoadSnapshot(f.ctx, ref)
		if err != nil {
			f.t.Fatal(err)
		}
		f.restoreEqual(r, s, want)
	}
	return len(refs)
}

func (f *fixture) restoreEqual(r *repo.Repository, s *repo.Snapshot, want map[string][]byte) {
	f.t.Helper()
	dir := f.t.TempDir()
	if err := recovery.RestoreSnapshot(f.ctx, r, s, dir, recovery.RestoreOptions{Workers: 2}); err != nil {
		f.t.Fatalf("restore %s of %s: %v", s.ID, s.VM, err)
	}
	for name, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			f.t.Fatalf("snapshot %s of %s: restored disk %s differs", s.ID, s.VM, name)
		}
	}
}

// verify runs a verify through a new handle.
func (f *fixture) verify(opts repo.VerifyOptions) (*repo.VerifyReport, error) {
	f.t.Helper()
	return openRepo(f.t, f.tg).Verify(f.ctx, opts)
}

func (f *fixture) keys(prefix string) []string {
	var out []string
	for _, k := range f.mt.Keys() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

func (f *fixture) bytesUnder(prefix string) int64 {
	var n int64
	f.mt.List(f.ctx, prefix, func(oi targets.ObjectInfo) error {
		n += oi.Size
		return nil
	})
	return n
}

// blobOf returns the location of a data blob the first page of a disk of s
// references.
func (f *fixture) blobOf(s *repo.Snapshot, disk string) chunk.Location {
	f.t.Helper()
	r := openRepo(f.t, f.tg)
	for _, d := range s.Disks {
		if d.Name != disk {
			continue
		}
		exts, err := r.LoadMapPage(f.ctx, d.Pages[0], 0, min(d.PageSize, d.Size))
		if err != nil || len(exts) == 0 {
			f.t.Fatalf("map page of %s: %v (%d extents)", disk, err, len(exts))
		}
		ix, err := r.Index(f.ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		loc, ok := ix.Lookup(exts[0].Blob)
		if !ok {
			f.t.Fatal("blob not indexed")
		}
		return loc
	}
	f.t.Fatalf("no disk %s", disk)
	return chunk.Location{}
}

// spyTarget wraps a target to watch and break it.
type spyTarget struct {
	targets.Target
	mu         sync.Mutex
	gets       []string
	failDelete func(key string) error
	onCreate   func(key string)
}

func (s *spyTarget) Get(ctx context.Context, key string) ([]byte, targets.ObjectInfo, error) {
	s.mu.Lock()
	s.gets = append(s.gets, key)
	s.mu.Unlock()
	return s.Target.Get(ctx, key)
}

func (s *spyTarget) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	fail := s.failDelete
	s.mu.Unlock()
	if fail != nil {
		if err := fail(key); err != nil {
			return err
		}
	}
	return s.Target.Delete(ctx, key)
}

func (s *spyTarget) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	s.mu.Lock()
	hook := s.onCreate
	s.mu.Unlock()
	if hook != nil {
		hook(key)
	}
	return s.Target.PutIfAbsent(ctx, key, data)
}

func (s *spyTarget) takeGets(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.gets {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	s.gets = nil
	return out
}

// ---------------------------------------------------------------------

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()

	if _, err := repo.Open(ctx, mt, testPassword, testOpts); !errors.Is(err, repo.ErrNoRepository) {
		t.Fatalf("open an empty target: err = %v, want ErrNoRepository", err)
	}
	if _, err := repo.Init(ctx, mt, "", testOpts); err == nil {
		t.Fatal("init with an empty password succeeded")
	}
	if len(mt.Keys()) != 0 {
		t.Fatalf("a failed init left %v", mt.Keys())
	}
	r := initRepo(t, mt)
	cfg := r.Config()
	if cfg.Version != repo.FormatVersion || len(cfg.ID) != 32 || cfg.Validate() != nil {
		t.Fatalf("config %+v", cfg)
	}
	if _, err := repo.Init(ctx, mt, "other", testOpts); !errors.Is(err, repo.ErrAlreadyInitialised) {
		t.Fatalf("second init: err = %v, want ErrAlreadyInitialised", err)
	}
	if n := len(keysUnder(mt, "keys/")); n != 1 {
		t.Fatalf("%d key files after a refused second init, want 1", n)
	}

	r2 := openRepo(t, mt)
	if r2.Config() != cfg {
		t.Fatalf("reopened config %+v, want %+v", r2.Config(), cfg)
	}
	_, err := repo.Open(ctx, mt, "wrong", testOpts)
	if !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("wrong password: err = %v", err)
	}
	if strings.Contains(err.Error(), "cipher") || strings.Contains(err.Error(), "authentication") {
		t.Fatalf("wrong password error leaks crypto wording: %v", err)
	}

	// A damaged config is reported as damage, not as a wrong password.
	mt.Corrupt("config", 20)
	if _, err := repo.Open(ctx, mt, testPassword, testOpts); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("corrupt config: err = %v, want ErrDamaged", err)
	}
}

func keysUnder(mt *memtarget.Target, prefix string) []string {
	var out []string
	for _, k := range mt.Keys() {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	r := initRepo(t, mt)

	keys, err := r.Keys(ctx)
	if err != nil || len(keys) != 1 || !keys[0].Current {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	first := keys[0].ID
	if _, err := r.AddKey(ctx, "", "x"); err == nil {
		t.Fatal("added a key with an empty password")
	}
	id, err := r.AddKey(ctx, "second password", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	keys, _ = r.Keys(ctx)
	if len(keys) != 2 {
		t.Fatalf("%d keys after add", len(keys))
	}
	for _, k := range keys {
		if k.ID == id && (k.Label != "laptop" || k.Current) {
			t.Fatalf("new key %+v", k)
		}
		if k.ID == first && !k.Current {
			t.Fatalf("opening key not marked current: %+v", k)
		}
	}

	// The added password opens the same repository.
	r2, err := repo.Open(ctx, mt, "second password", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Config().ID != r.Config().ID {
		t.Fatal("second password opened another repository")
	}
	// Data written with one key reads with the other.
	s := &repo.Snapshot{ID: repo.NewSnapshotID(), VM: "vm1", Time: time.Now().UTC()}
	if err := r.SaveSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, err := r2.FindSnapshot(ctx, "vm1", "latest"); err != nil || got.ID != s.ID {
		t.Fatalf("read with the second key: %v, %v", got, err)
	}

	// The key in use cannot be removed; another can, by unique prefix.
	if _, err := r.RemoveKey(ctx, first); err == nil {
		t.Fatal("removed the key in use")
	}
	if _, err := r.RemoveKey(ctx, "zzzz"); err == nil {
		t.Fatal("removed a key that does not exist")
	}
	removed, err := r2.RemoveKey(ctx, first[:8])
	if err != nil || removed != first {
		t.Fatalf("remove by prefix: %q, %v", removed, err)
	}
	if _, err := repo.Open(ctx, mt, testPassword, testOpts); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("removed password still opens: %v", err)
	}
	if _, err := repo.Open(ctx, mt, "second password", testOpts); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotsListFindDelete(t *testing.T) {
	ctx := context.Background()
	mt := memtarget.New()
	r := initRepo(t, mt)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i, vm := range []string{"web", "db", "web", "web"} {
		s := &repo.Snapshot{ID: repo.NewSnapshotID(), VM: vm, Time: base.Add(time.Duration(i) * time.Hour), Consistency: repo.ConsistencyCrash}
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	if err := r.SaveSnapshot(ctx, &repo.Snapshot{ID: repo.NewSnapshotID(), VM: "bad/name", Time: base}); err == nil {
		t.Fatal("saved a snapshot with a bad vm name")
	}
	// The manifest is create-only.
	dup := &repo.Snapshot{ID: ids[1], VM: "db", Time: base.Add(time.Hour)}
	if err := r.SaveSnapshot(ctx, dup); !errors.Is(err, targets.ErrExists) {
		t.Fatalf("overwrote a manifest: %v", err)
	}
	// Foreign objects under snapshots/ are ignored.
	mt.Put(ctx, "snapshots/web/notes.txt", []byte("hi"))

	all, err := r.ListSnapshots(ctx, "")
	if err != nil || len(all) != 4 {
		t.Fatalf("list all: %d, %v", len(all), err)
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) }) {
		t.Fatal("not oldest first")
	}
	web, _ := r.ListSnapshots(ctx, "web")
	if len(web) != 3 || web[0].ID != ids[0] || web[2].ID != ids[3] {
		t.Fatalf("list web: %+v", web)
	}
	if !web[1].Time.Equal(base.Add(2 * time.Hour)) {
		t.Fatalf("time from the name: %v", web[1].Time)
	}

	latest, err := r.LatestSnapshot(ctx, "web")
	if err != nil || latest.ID != ids[3] || latest.Consistency != repo.ConsistencyCrash || latest.Version != repo.FormatVersion {
		t.Fatalf("latest: %+v, %v", latest, err)
	}
	if s, err := r.LatestSnapshot(ctx, "nosuchvm"); s != nil || err != nil {
		t.Fatalf("latest of a vm without snapshots: %v, %v", s, err)
	}
	if s, err := r.FindSnapshot(ctx, "", ids[1][:6]); err != nil || s.ID != ids[1] {
		t.Fatalf("find by prefix: %v, %v", s, err)
	}
	if _, err := r.FindSnapshot(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FindSnapshot(ctx, "web", ids[1]); !errors.Is(err, repo.ErrNoSnapshot) {
		t.Fatalf("find another vm's snapshot: %v", err)
	}
	if _, err := r.FindSnapshot(ctx, "", "ffffffffffffffffff"); !errors.Is(err, repo.ErrNoSnapshot) {
		t.Fatalf("find unknown: %v", err)
	}

	if err := r.DeleteSnapshot(ctx, web[2]); err != nil {
		t.Fatal(err)
	}
	if latest, _ := r.LatestSnapshot(ctx, "web"); latest.ID != ids[2] {
		t.Fatalf("latest after delete: %s", latest.ID)
	}

	// A manifest stored under another snapshot's name is damage.
	refs, _ := r.ListSnapshots(ctx, "db")
	other, _, _ := mt.Get(ctx, web[0].Key)
	mt.Put(ctx, refs[0].Key, other)
	if _, err := r.LoadSnapshot(ctx, refs[0]); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("swapped manifest: %v", err)
	}
}

func TestMapPageRoundTripAndDamage(t *testing.T) {
	var a, b chunk.ID
	a[0], b[0] = 1, 2
	start := int64(1 << 20)
	exts := []repo.Extent{
		{Off: start, Len: 4096, Blob: a},
		{Off: start + 8192, Len: 100, Blob: b, BlobOff: 7},
		{Off: start + 9000, Len: 50, Blob: a, BlobOff: 4096},
	}
	enc := repo.EncodeMapPage(exts, start)
	got, err := repo.DecodeMapPage(enc, start, start+1<<20)
	if err != nil || len(got) != len(exts) {
		t.Fatalf("decode: %v, %v", got, err)
	}
	for i := range exts {
		if got[i] != exts[i] {
			t.Fatalf("extent %d: %+v, want %+v", i, got[i], exts[i])
		}
	}
	for n := 0; n < len(enc); n++ {
		if _, err := repo.DecodeMapPage(enc[:n], start, start+1<<20); !errors.Is(err, repo.ErrDamaged) {
			t.Fatalf("truncated to %d bytes: err = %v", n, err)
		}
	}
	if _, err := repo.DecodeMapPage(enc, start, start+9000); !errors.Is(err, repo.ErrDamaged) {
		t.Fatal("an extent past the page end was accepted")
	}
	d := []uint64{0, 1, 0xffffffffffffffff}
	dd, err := repo.DecodeDigests(repo.EncodeDigests(d))
	if err != nil || len(dd) != 3 || dd[2] != d[2] {
		t.Fatalf("digests: %v, %v", dd, err)
	}
	if _, err := repo.DecodeDigests(make([]byte, 9)); !errors.Is(err, repo.ErrDamaged) {
		t.Fatal("a 9-byte digest page was accepted")
	}
}
