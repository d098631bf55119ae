package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// compareOptions are the flags of the compare subcommand.
type compareOptions struct {
	Img        string // reuse this image instead of building one
	Spec       imageSpec
	Work       string // work dir; "" = a new dir under Cache
	Cache      string
	Drctl      string
	Restic     string
	Tools      []string // which of drctl, restic to run
	Keep       bool     // keep the work dir
	DropCaches bool
}

type stepKind int

const (
	stepInit stepKind = iota
	stepBackup
	stepRestore
)

// step is one row group of the comparison. prepare runs once before the
// tools (it changes the image).
type step struct {
	name    string
	kind    stepKind
	prepare func() error
}

// result is one tool's measurements for one step.
type result struct {
	Step, Tool string
	Kind       stepKind
	Run        measurement
	RepoBytes  int64 // repository bytes added by the step
	RepoFiles  int64 // repository files added by the step
	Stats      toolStats
	Verify     string // restore only: "identical" or where it differs
	Err        error
	Skipped    bool
}

// benchmark is one compare run.
type benchmark struct {
	opts     compareOptions
	work     string
	img      string // the working copy that the tools back up
	info     imageInfo
	source   string // the image it was copied from
	tools    []*tool
	failed   map[string]bool
	dropped  bool // page cache dropped before every step
	changes  []string
	results  []result
	versions map[string]string
	started  time.Time
}

func runCompare(ctx context.Context, opts compareOptions, out io.Writer) error {
	b, err := newBenchmark(ctx, opts)
	if err != nil {
		return err
	}
	defer b.cleanup()
	if err := b.runSteps(ctx); err != nil {
		return err
	}
	writeReport(out, b)
	return b.failure()
}

func newBenchmark(ctx context.Context, opts compareOptions) (*benchmark, error) {
	b := &benchmark{opts: opts, failed: map[string]bool{}, dropped: opts.DropCaches, versions: map[string]string{}, started: time.Now()}
	if err := b.setupTools(ctx); err != nil {
		return nil, err
	}
	src := opts.Img
	if src == "" {
		var err error
		if src, err = ensureImage(ctx, opts.Spec, opts.Cache); err != nil {
			return nil, err
		}
	}
	if err := b.setupWork(src); err != nil {
		b.cleanup()
		return nil, err
	}
	return b, nil
}

func (b *benchmark) setupTools(ctx context.Context) error {
	for _, name := range b.opts.Tools {
		var bin, hint string
		switch name {
		case "drctl":
			bin, hint = b.opts.Drctl, "run make build"
		case "restic":
			bin, hint = b.opts.Restic, "run make bench-tools"
		default:
			return fmt.Errorf("unknown tool %q: use drctl and/or restic", name)
		}
		if err := checkBinary(name, bin, hint); err != nil {
			return err
		}
		b.versions[name] = binVersion(ctx, bin)
	}
	if len(b.opts.Tools) == 0 {
		return errors.New("no tools to compare: pass -tools drctl,restic")
	}
	return nil
}

// setupWork creates the work dir and the working copy of the image.
func (b *benchmark) setupWork(src string) error {
	work := b.opts.Work
	if work == "" {
		if err := os.MkdirAll(b.opts.Cache, 0o755); err != nil {
			return fmt.Errorf("create cache dir: %w", err)
		}
		dir, err := os.MkdirTemp(b.opts.Cache, "run-")
		if err != nil {
			return fmt.Errorf("create work dir: %w", err)
		}
		work = dir
	} else if err := emptyDir(work); err != nil {
		return err
	}
	abs, err := filepath.Abs(work)
	if err != nil {
		return fmt.Errorf("resolve work dir: %w", err)
	}
	b.work = abs
	if err := os.MkdirAll(filepath.Join(abs, "logs"), 0o755); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	for _, name := range b.opts.Tools {
		if name == "drctl" {
			b.tools = append(b.tools, drctlTool(b.opts.Drctl, abs))
		} else {
			b.tools = append(b.tools, resticTool(b.opts.Restic, abs))
		}
	}
	b.source, b.img = src, filepath.Join(abs, "vm.img")
	slog.Info("copying image", "from", src, "to", b.img)
	if err := copySparse(src, b.img); err != nil {
		return err
	}
	b.info, err = statImage(b.img)
	return err
}

// emptyDir makes sure dir exists and is empty, so that old repositories
// never mix into a run.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read work dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("work dir %s is not empty: remove it or pick another -work", dir)
	}
	return nil
}

func (b *benchmark) cleanup() {
	if b.work == "" {
		return
	}
	if b.opts.Keep {
		slog.Info("kept work dir", "dir", b.work)
		return
	}
	if err := os.RemoveAll(b.work); err != nil {
		slog.Warn("remove work dir", "dir", b.work, "err", err)
	}
}

func (b *benchmark) steps() []step {
	return []step{
		{name: "init", kind: stepInit},
		{name: "full", kind: stepBackup},
		{name: "incr 1% (seed 42)", kind: stepBackup, prepare: b.modify(0.01, 42)},
		{name: "incr +10% (seed 43)", kind: stepBackup, prepare: b.modify(0.10, 43)},
		{name: "restore latest", kind: stepRestore},
	}
}

func (b *benchmark) modify(fraction float64, seed uint64) func() error {
	return func() error {
		m, err := modifyImage(b.img, fraction, seed)
		if err != nil {
			return err
		}
		b.changes = append(b.changes, fmt.Sprintf("seed %d: %s", seed, m))
		slog.Info("modified image", "seed", seed, "changed", m.String())
		return nil
	}
}

func (b *benchmark) runSteps(ctx context.Context) error {
	for _, s := range b.steps() {
		if s.prepare != nil {
			if err := s.prepare(); err != nil {
				return err
			}
		}
		for _, t := range b.tools {
			if err := ctx.Err(); err != nil {
				return err
			}
			b.results = append(b.results, b.runStep(ctx, s, t))
		}
	}
	return nil
}

func (b *benchmark) runStep(ctx context.Context, s step, t *tool) result {
	res := result{Step: s.name, Tool: t.name, Kind: s.kind, Stats: toolStats{-1, -1, -1, -1, -1, -1}}
	if b.failed[t.name] {
		res.Skipped = true
		return res
	}
	slog.Info("step", "step", s.name, "tool", t.name)
	bytes0, files0, err := dirUsage(t.repo)
	if err == nil {
		res.Err = b.execute(ctx, s, t, &res)
	} else {
		res.Err = err
	}
	bytes1, files1, err := dirUsage(t.repo)
	res.RepoBytes, res.RepoFiles = bytes1-bytes0, files1-files0
	if res.Err == nil {
		res.Err = err
	}
	if res.Err != nil {
		b.failed[t.name] = true
		slog.Error("step failed", "step", s.name, "tool", t.name, "err", res.Err)
	} else {
		slog.Info("step done", "step", s.name, "tool", t.name, "wall", res.Run.Wall.Round(time.Millisecond),
			"repo_added_mib", mib(res.RepoBytes), "max_rss_mib", mib(res.Run.MaxRSS))
	}
	return res
}

// execute runs the tool's command for the step, with a cold page cache.
func (b *benchmark) execute(ctx context.Context, s step, t *tool, res *result) error {
	var args []string
	target := filepath.Join(b.work, "restore-"+t.name)
	switch s.kind {
	case stepInit:
		args = t.init()
	case stepBackup:
		args = t.backup(b.img)
	case stepRestore:
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("create restore dir: %w", err)
		}
		args = t.restore(target)
	}
	if b.opts.DropCaches && !dropCaches() {
		b.dropped = false
	}
	logName := fmt.Sprintf("%s-%s.log", t.name, slug(s.name))
	r, err := measure(ctx, command{Dir: b.work, Env: append(os.Environ(), t.env...), Args: args, Log: filepath.Join(b.work, "logs", logName)})
	res.Run = r
	if r.Summary != nil {
		res.Stats = t.stats(r.Summary)
	}
	if err != nil || s.kind != stepRestore {
		return err
	}
	return b.verify(t, target, res)
}

// verify compares the restored image with the working image, then
// removes it to free the disk space.
func (b *benchmark) verify(t *tool, target string, res *result) error {
	defer func() {
		if !b.opts.Keep {
			_ = os.RemoveAll(target)
		}
	}()
	restored, err := t.restored(target, b.img)
	if err != nil {
		return err
	}
	off, err := firstDifference(b.img, restored)
	if err != nil {
		return err
	}
	if off >= 0 {
		res.Verify = fmt.Sprintf("DIFFERS at byte %d", off)
		return fmt.Errorf("restored image %s differs from the source at byte %d", restored, off)
	}
	res.Verify = "identical"
	return nil
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// failure returns an error if any step failed.
func (b *benchmark) failure() error {
	var failed []string
	for _, r := range b.results {
		if r.Err != nil {
			failed = append(failed, r.Tool+" "+r.Step)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed steps: %s (logs in %s with -keep)", strings.Join(failed, ", "), filepath.Join(b.work, "logs"))
	}
	return nil
}

func machineLine() string {
	return fmt.Sprintf("%d CPUs, %s/%s, %s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
