// Command benchtool makes test disk images and compares drctl with restic
// side by side on the same image and the same changes.
//
//	benchtool mkimage [-kind synthetic|ext4] [-size 256M] [-seed 1] OUT
//	benchtool modify -fraction 0.01 [-seed 42] IMG
//	benchtool compare [-size 2G] [-kind ext4] [-img IMG] [-work DIR] [-keep] ...
//	benchtool summary FILE
//	benchtool live [-disk-size 8G] [-fraction 0.01] ...
//
// Run it from the repository root (go run ./internal/benchtool ...); the
// defaults of compare (bin/drctl, .tools/bin/restic, .cache/bench) are
// relative to it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const usage = `usage: benchtool COMMAND [flags] [args]

commands:
  mkimage  build a deterministic sparse disk image (synthetic or ext4)
  modify   overwrite a fraction of an image's 4 KiB blocks with random bytes
  compare  time drctl and restic side by side and print a Markdown table
  summary  print the last --json summary line of drctl replicate in words
  live     a running QEMU VM replicated with dirty bitmaps vs restic on its disk image

Run "benchtool COMMAND -h" for the flags of a command.
`

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "mkimage":
		return cmdMkimage(ctx, args[1:], out)
	case "modify":
		return cmdModify(args[1:], out)
	case "compare":
		return cmdCompare(ctx, args[1:], out)
	case "summary":
		return cmdSummary(args[1:], out)
	case "live":
		return cmdLive(ctx, args[1:], out)
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return nil
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func cmdMkimage(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	kind := fs.String("kind", "synthetic", "synthetic (fast: random, text, duplicate and sparse regions, holes) or ext4 (mkfs.ext4 -d from system files + a random file)")
	size := fs.String("size", "256M", "image size (K, M, G suffixes, binary units; a multiple of 4 KiB)")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same image")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: benchtool mkimage [-kind synthetic|ext4] [-size 256M] [-seed 1] OUT")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("mkimage: want exactly one output file")
	}
	n, err := parseSize(*size)
	if err != nil {
		return err
	}
	spec := imageSpec{Kind: *kind, Size: n, Seed: *seed}
	if err := makeImage(ctx, spec, fs.Arg(0)); err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	info, err := statImage(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %s image, %s MiB, %s MiB allocated, seed %d\n", fs.Arg(0), spec.Kind, mib(info.Size), mib(info.Allocated), spec.Seed)
	return nil
}

func cmdModify(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("modify", flag.ContinueOnError)
	fraction := fs.Float64("fraction", 0.01, "fraction of the 4 KiB blocks to overwrite, in (0, 1]")
	seed := fs.Uint64("seed", 42, "random seed: picks the blocks and their new bytes")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: benchtool modify [-fraction 0.01] [-seed 42] IMG")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("modify: want exactly one image")
	}
	m, err := modifyImage(fs.Arg(0), *fraction, *seed)
	if err != nil {
		return fmt.Errorf("modify image: %w", err)
	}
	fmt.Fprintf(out, "%s: modified %s, seed %d\n", fs.Arg(0), m, *seed)
	return nil
}

func cmdCompare(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var o compareOptions
	fs.StringVar(&o.Img, "img", "", "reuse this image (it is copied, never changed); default: build one, cached in -cache by kind, size and seed")
	kind := fs.String("kind", "ext4", "image to build: ext4 (VM-like, needs mkfs.ext4) or synthetic")
	size := fs.String("size", "2G", "size of the image to build")
	fs.Uint64Var(&o.Spec.Seed, "seed", 1, "seed of the image to build")
	fs.StringVar(&o.Work, "work", "", "work dir for the repositories, image copy and restores (must be empty); default: a new dir in -cache")
	fs.StringVar(&o.Cache, "cache", ".cache/bench", "where built images are cached")
	fs.StringVar(&o.Drctl, "drctl", "bin/drctl", "drctl binary")
	fs.StringVar(&o.Restic, "restic", ".tools/bin/restic", "restic binary")
	tools := fs.String("tools", "drctl,restic", "comma-separated tools to run")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work dir (repositories, logs, restored images)")
	fs.BoolVar(&o.DropCaches, "drop-caches", true, "drop the page cache before each step (root only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("compare: unexpected arguments %q", fs.Args())
	}
	n, err := parseSize(*size)
	if err != nil {
		return err
	}
	o.Spec.Kind, o.Spec.Size = *kind, n
	if err := o.Spec.validate(); err != nil {
		return err
	}
	o.Tools = splitList(*tools)
	if err := absPaths(&o.Img, &o.Work, &o.Cache, &o.Drctl, &o.Restic); err != nil {
		return err
	}
	return runCompare(ctx, o, out)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// absPaths makes the non-empty paths absolute: the tools run in the work dir.
func absPaths(paths ...*string) error {
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("resolve path %s: %w", *p, err)
		}
		*p = abs
	}
	return nil
}

// cmdSummary prints the summary line of a saved "drctl replicate --json"
// output in words; used by the demo, which cannot count on jq.
func cmdSummary(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: benchtool summary FILE")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return fmt.Errorf("open summary: %w", err)
	}
	defer f.Close()
	var s summaryScanner
	if _, err := io.Copy(&s, f); err != nil {
		return fmt.Errorf("read summary: %w", err)
	}
	s.flush()
	if s.last == nil {
		return fmt.Errorf("%s has no \"message_type\":\"summary\" line", args[0])
	}
	fmt.Fprintln(out, describeSummary(s.last))
	return nil
}

// describeSummary renders drctl's replicate summary; absent fields are n/a.
func describeSummary(s summary) string {
	secs := "n/a"
	if d, ok := s["duration_seconds"].(json.Number); ok {
		if f, err := d.Float64(); err == nil {
			secs = strconv.FormatFloat(f, 'f', 2, 64)
		}
	}
	size := func(name string) string {
		if v := s.int(name); v >= 0 {
			return mib(v) + " MiB"
		}
		return "n/a"
	}
	return fmt.Sprintf("read %s, new %s, stored %s, uploaded %s in %s objects and %s requests, %s s",
		size("bytes_read"), size("bytes_new"), size("bytes_stored"), size("bytes_uploaded"),
		optInt(s.int("objects_written")), optInt(s.int("requests")), secs)
}
