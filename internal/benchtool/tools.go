package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tool describes how to drive one backup program through the steps.
type tool struct {
	name    string
	bin     string
	repo    string
	env     []string
	init    func() []string
	backup  func(img string) []string
	restore func(target string) []string
	// restored finds the restored image under target.
	restored func(target, img string) (string, error)
	// stats maps the tool's JSON summary onto the common columns.
	stats func(summary) toolStats
}

// toolStats are the figures a tool reports about a backup; -1 = n/a.
type toolStats struct {
	Read, New, Stored, Uploaded, Objects, Requests int64
}

const benchPassword = "benchtool-not-a-secret" // throwaway repositories

func drctlTool(bin, work string) *tool {
	repo := filepath.Join(work, "drctl-repo")
	return &tool{
		name: "drctl", bin: bin, repo: repo,
		env:  []string{"DRCTL_PASSWORD=" + benchPassword},
		init: func() []string { return []string{bin, "init", "-r", repo} },
		backup: func(img string) []string {
			return []string{bin, "replicate", "-r", repo, "--vm", "bench", "--disk", img, "--json"}
		},
		restore: func(target string) []string {
			return []string{bin, "restore", "-r", repo, "--vm", "bench", "--snapshot", "latest", "--target", target}
		},
		restored: findRestored,
		stats: func(s summary) toolStats {
			return toolStats{Read: s.int("bytes_read"), New: s.int("bytes_new"), Stored: s.int("bytes_stored"),
				Uploaded: s.int("bytes_uploaded"), Objects: s.int("objects_written"), Requests: s.int("requests")}
		},
	}
}

func resticTool(bin, work string) *tool {
	repo := filepath.Join(work, "restic-repo")
	return &tool{
		name: "restic", bin: bin, repo: repo,
		env:  []string{"RESTIC_PASSWORD=" + benchPassword, "RESTIC_CACHE_DIR=" + filepath.Join(work, "restic-cache")},
		init: func() []string { return []string{bin, "init", "-r", repo} },
		backup: func(img string) []string {
			return []string{bin, "-r", repo, "backup", "--json", img}
		},
		restore: func(target string) []string {
			return []string{bin, "-r", repo, "restore", "latest", "--target", target}
		},
		restored: findRestored,
		stats: func(s summary) toolStats {
			// restic reports no upload or object counts; for a local
			// repository what it stores is what it writes.
			return toolStats{Read: s.int("total_bytes_processed"), New: s.int("data_added"), Stored: s.int("data_added_packed"),
				Uploaded: -1, Objects: -1, Requests: -1}
		},
	}
}

// findRestored looks for the restored image under target: drctl writes
// target/<base name>, restic target/<absolute path>. Any layout with one
// file of that base name works.
func findRestored(target, img string) (string, error) {
	base := filepath.Base(img)
	var found []string
	err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && d.Name() == base {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("look for restored image: %w", err)
	}
	if len(found) != 1 {
		return "", fmt.Errorf("look for restored image: found %d files named %s under %s, want 1", len(found), base, target)
	}
	return found[0], nil
}

// binVersion returns the first line a program prints about its version.
func binVersion(ctx context.Context, bin string) string {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		if line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); err == nil && line != "" {
			return line
		}
	}
	return "version unknown"
}

// checkBinary fails early, with a hint, when a tool is not built.
func checkBinary(name, bin, hint string) error {
	fi, err := os.Stat(bin)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s not found at %s: %s", name, bin, hint)
	}
	if err != nil {
		return fmt.Errorf("check %s binary: %w", name, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s at %s is not an executable file: %s", name, bin, hint)
	}
	return nil
}
