package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/drctl/drctl/chunk"
	"github.com/drctl/drctl/targets"
)

// Object names (see docs/format.md).
const (
	configKey       = "config"
	dataPrefix      = "data/"
	indexPrefix     = "index/"
	snapshotPrefix  = "snapshots/"
	leasesPrefix    = "leases/"
	condemnedPrefix = "condemned/"
)

// Options tune a repository handle. The zero value is usable.
type Options struct {
	// KDF is used for key files written by this handle (init, key add).
	KDF KDFParams
	// WriterID names this writer in index and pack object names, so that
	// several agents can write one repository without a lock. It should be
	// a random id persisted by the agent; empty means a random one per
	// process.
	WriterID string
	// Uploads is the number of concurrent pack uploads (default 2: each
	// holds a whole pack in memory).
	Uploads int
	// Downloads is the number of concurrent range reads in restore and
	// verify (default 8).
	Downloads int
	// LeaseTTL is how long a writer lease (and a prune's) stays valid
	// without renewal; it is renewed every third of it. 0 means
	// DefaultLeaseTTL. The holder records it in the lease, so a prune
	// judges each lease by its own holder's setting.
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// Tune adjusts the configuration of a new repository before Init
	// writes it (tests use it for small pages and packs).
	Tune func(*Config)
}

func (o *Options) fill() {
	if o.KDF.Time == 0 {
		o.KDF = DefaultKDF
	}
	if o.WriterID == "" {
		o.WriterID = randomHex(8)
	}
	if o.Uploads <= 0 {
		o.Uploads = 2
	}
	if o.Downloads <= 0 {
		o.Downloads = 8
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Repository is an open repository. Safe for concurrent use.
type Repository struct {
	target targets.Target
	codec  *chunk.Codec
	cfg    Config
	keyID  string
	opts   Options
	log    *slog.Logger

	indexMu     sync.Mutex
	index       *chunk.Index
	indexLoaded map[string]bool // index files merged into index
	condemned   *condemnedView  // what writers must not deduplicate against, for index
}

// Init creates a repository on t protected by password.
func Init(ctx context.Context, t targets.Target, password string, opts Options) (*Repository, error) {
	opts.fill()
	if _, err := t.Stat(ctx, configKey); err == nil {
		return nil, fmt.Errorf("init %s: %w", t, ErrAlreadyInitialised)
	} else if !errors.Is(err, targets.ErrNotFound) {
		return nil, fmt.Errorf("init %s: %w", t, err)
	}
	key, err := chunk.NewRandomKey()
	if err != nil {
		return nil, err
	}
	codec, err := chunk.NewCodec(key)
	if err != nil {
		return nil, err
	}
	cfg, err := NewConfig()
	if err != nil {
		return nil, err
	}
	if opts.Tune != nil {
		opts.Tune(&cfg)
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("init %s: %w", t, err)
		}
	}
	r := &Repository{target: t, codec: codec, cfg: cfg, opts: opts, log: opts.Logger}
	// The key goes first: a config without a key would be a repository
	// nobody can open. The create-only config put is the commit point; the
	// loser of an init race removes its key.
	r.keyID, err = r.AddKey(ctx, password, "")
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", t, err)
	}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if _, err := t.PutIfAbsent(ctx, configKey, codec.Seal(plain)); err != nil {
		_ = t.Delete(context.WithoutCancel(ctx), keysPrefix+r.keyID)
		if errors.Is(err, targets.ErrExists) {
			return nil, fmt.Errorf("init %s: %w", t, ErrAlreadyInitialised)
		}
		return nil, fmt.Errorf("init %s: save config: %w", t, err)
	}
	r.index = chunk.NewIndex()
	r.indexLoaded = map[string]bool{}
	return r, nil
}

// Open opens the repository on t with password.
func Open(ctx context.Context, t targets.Target, password string, opts Options) (*Repository, error) {
	opts.fill()
	sealed, _, err := t.Get(ctx, configKey)
	if errors.Is(err, targets.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w (create one with drctl init)", t, ErrNoRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: read config: %w", t, err)
	}
	key, keyID, err := findKey(ctx, t, password)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", t, err)
	}
	codec, err := chunk.NewCodec(key)
	if err != nil {
		return nil, err
	}
	plain, err := codec.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("open %s: decrypt config: %w: %w", t, ErrDamaged, err)
	}
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("open %s: parse config: %w: %w", t, ErrDamaged, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open %s: %w", t, err)
	}
	return &Repository{target: t, codec: codec, cfg: cfg, keyID: keyID, opts: opts, log: opts.Logger}, nil
}

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Target returns the target the repository lives on.
func (r *Repository) Target() targets.Target { return r.target }

// Codec returns the repository's blob codec.
func (r *Repository) Codec() *chunk.Codec { return r.codec }

// WriterID is this handle's writer id.
func (r *Repository) WriterID() string { return r.opts.WriterID }

// Index returns the merged index of all index files, loading it on first
// use.
func (r *Repository) Index(ctx context.Context) (*chunk.Index, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	if r.index != nil {
		return r.index, nil
	}
	return r.refreshIndexLocked(ctx)
}

// RefreshIndex brings the index up to date with the target: index files
// written by other writers since the last load are merged in; if one that
// was loaded has gone (a prune consolidated it), or the set of condemned
// records changed, the index is rebuilt, so that a long-lived handle never
// deduplicates against deleted packs.
func (r *Repository) RefreshIndex(ctx context.Context) (*chunk.Index, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	return r.refreshIndexLocked(ctx)
}

func (r *Repository) refreshIndexLocked(ctx context.Context) (*chunk.Index, error) {
	ix, _, err := r.refreshLocked(ctx)
	return ix, err
}

// refreshWithCondemned is RefreshIndex plus the condemned view that goes
// with the index (Writer uses both).
func (r *Repository) refreshWithCondemned(ctx context.Context) (*chunk.Index, *condemnedView, error) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	return r.refreshLocked(ctx)
}

// refreshLocked loads what changed. A file listed but gone when read was
// replaced by a concurrent prune; the load then starts over from a fresh
// listing, a few times, rather than fail a replication for it.
func (r *Repository) refreshLocked(ctx context.Context) (*chunk.Index, *condemnedView, error) {
	const attempts = 4
	var err error
	for range attempts {
		var ix *chunk.Index
		var cv *condemnedView
		ix, cv, err = r.refreshOnce(ctx)
		if err == nil {
			return ix, cv, nil
		}
		if !errors.Is(err, targets.ErrNotFound) {
			return nil, nil, err
		}
		r.log.Debug("an index file went while loading the index; loading again", "err", err)
		r.index, r.indexLoaded, r.condemned = nil, nil, nil
	}
	return nil, nil, err
}

func (r *Repository) refreshOnce(ctx context.Context) (*chunk.Index, *condemnedView, error) {
	// A writer has taken its lease by now, naming the records it listed
	// before: each of them is in this listing, unless swept meanwhile, and
	// then the index files listed next no longer hold its packs. A record
	// newer than the lease may be missed: the lease blocks its sweep.
	records, err := r.listCondemned(ctx)
	if err != nil {
		return nil, nil, err
	}
	present := map[string]bool{}
	if err := r.target.List(ctx, indexPrefix, func(oi targets.ObjectInfo) error {
		present[oi.Key] = true
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list index files: %w", err)
	}
	ix, loaded, cv := r.index, r.indexLoaded, r.condemned
	if cv == nil || !cv.sameRecords(records) {
		ix = nil
	}
	for k := range loaded {
		if !present[k] {
			ix = nil
			break
		}
	}
	if ix == nil {
		if cv, err = r.loadCondemnedView(ctx, records); err != nil {
			return nil, nil, err
		}
		ix, loaded = chunk.NewIndex(), map[string]bool{}
	}
	var todo []string
	for k := range present {
		if !loaded[k] {
			todo = append(todo, k)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Downloads)
	for _, k := range todo {
		g.Go(func() error {
			data, _, err := r.target.Get(gctx, k)
			if err != nil {
				return fmt.Errorf("read index %s: %w", k, err)
			}
			f, err := chunk.DecodeIndexFile(r.codec, data)
			if err != nil {
				// One damaged index file must not stop every replication:
				// its blobs are unknown to this handle, so a writer stores
				// them again (duplicates, never loss). Readers that need
				// them fail as damaged, verify names the file, and prune
				// refuses to run until it is dealt with.
				r.log.Error("index file is damaged: the blobs it lists are stored again by new snapshots; run drctl verify", "index", k, "err", err)
				return nil
			}
			for _, p := range f.Packs {
				ix.AddPack(p)
			}
			cv.revive(f.Packs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, k := range todo {
		loaded[k] = true
	}
	r.index, r.indexLoaded, r.condemned = ix, loaded, cv
	return ix, cv, nil
}

// noteIndexFile records an index file this handle wrote itself and
// merged into ix, so a refresh need not read it back. If ix has been
// replaced meanwhile, the next refresh reads the file like any other.
func (r *Repository) noteIndexFile(key string, ix *chunk.Index) {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	if r.index == ix {
		r.indexLoaded[key] = true
	}
}

// ReloadIndex drops the loaded index; the next use reads it anew.
func (r *Repository) ReloadIndex() {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	r.index, r.indexLoaded, r.condemned = nil, nil, nil
}

// PackKey is the object name of a pack.
func PackKey(id chunk.ID) string {
	s := id.String()
	return dataPrefix + s[:2] + "/" + s
}

// parsePackKey reverses packKey.
func parsePackKey(key string) (chunk.ID, bool) {
	rest, ok := strings.CutPrefix(key, dataPrefix)
	if !ok || len(rest) != 3+64 {
		return chunk.ID{}, false
	}
	id, err := chunk.ParseID(rest[3:])
	return id, err == nil
}

// LoadBlob reads, decrypts and checks one blob.
func (r *Repository) LoadBlob(ctx context.Context, id chunk.ID) ([]byte, error) {
	ix, err := r.Index(ctx)
	if err != nil {
		return nil, err
	}
	loc, ok := ix.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("blob %s is not in the index: %w", id.Short(), ErrDamaged)
	}
	stored, err := r.target.GetRange(ctx, PackKey(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("read blob %s from pack %s: %w", id.Short(), loc.Pack.Short(), err)
	}
	plain, err := r.codec.Decode(make([]byte, 0, loc.RawLength), stored, id)
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s: %w: %w", id.Short(), loc.Pack.Short(), ErrDamaged, err)
	}
	return plain, nil
}
