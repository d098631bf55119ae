package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// writeReport prints the comparison as Markdown, ready to paste into a note.
func writeReport(w io.Writer, b *benchmark) {
	fmt.Fprintf(w, "## drctl vs restic: %s MiB image, side by side\n\n", mib(b.info.Size))
	fmt.Fprintf(w, "- when: %s (took %s)\n", b.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(b.started).Round(time.Second))
	fmt.Fprintf(w, "- machine: %s\n", machineLine())
	fmt.Fprintf(w, "- image: %s, %s MiB, %s MiB allocated (copy of %s)\n", b.imageKind(), mib(b.info.Size), mib(b.info.Allocated), b.source)
	for _, c := range b.changes {
		fmt.Fprintf(w, "- changes, %s\n", c)
	}
	for _, t := range b.tools {
		fmt.Fprintf(w, "- %s: %s (%s)\n", t.name, b.versions[t.name], t.bin)
	}
	fmt.Fprintf(w, "- page cache dropped before each step: %s\n\n", yesNo(b.dropped))
	writeTable(w, b)
	writeRatios(w, b)
	writeNotes(w, b)
}

func (b *benchmark) imageKind() string {
	if b.opts.Img != "" {
		return "given image"
	}
	return fmt.Sprintf("%s (seed %d)", b.opts.Spec.Kind, b.opts.Spec.Seed)
}

func writeTable(w io.Writer, b *benchmark) {
	fmt.Fprintln(w, "| step | tool | wall s | MB/s | CPU s | max RSS MiB | repo +MiB | repo +files | read MiB | new MiB | stored MiB | uploaded MiB | objects | check |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range b.results {
		if r.Skipped {
			fmt.Fprintf(w, "| %s | %s | | | | | | | | | | | | skipped (earlier step failed) |\n", r.Step, r.Tool)
			continue
		}
		speed := "–"
		if r.Kind != stepInit {
			speed = mbps(b.info.Size, r.Run.Wall)
		}
		fmt.Fprintf(w, "| %s | %s | %.2f | %s | %.2f | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n",
			r.Step, r.Tool, r.Run.Wall.Seconds(), speed, r.Run.CPU.Seconds(), mib(r.Run.MaxRSS),
			mib(r.RepoBytes), r.RepoFiles, optMiB(r.Stats.Read), optMiB(r.Stats.New), optMiB(r.Stats.Stored),
			optMiB(r.Stats.Uploaded), optInt(r.Stats.Objects), check(r))
	}
	fmt.Fprintln(w)
}

// writeRatios prints drctl/restic for every step both tools completed.
func writeRatios(w io.Writer, b *benchmark) {
	pairs := b.pairs()
	if len(pairs) == 0 {
		return
	}
	fmt.Fprintln(w, "### drctl / restic (below 1 = drctl uses less)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| step | wall time | stored (repo +) | max RSS |")
	fmt.Fprintln(w, "|---|--:|--:|--:|")
	restore := ""
	for _, p := range pairs {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", p[0].Step,
			ratio(p[0].Run.Wall.Seconds(), p[1].Run.Wall.Seconds()),
			ratio(float64(p[0].RepoBytes), float64(p[1].RepoBytes)),
			ratio(float64(p[0].Run.MaxRSS), float64(p[1].Run.MaxRSS)))
		if p[0].Kind == stepRestore {
			restore = fmt.Sprintf("\nRestore speed: drctl %s MB/s, restic %s MB/s: drctl/restic = %s.\n",
				mbps(b.info.Size, p[0].Run.Wall), mbps(b.info.Size, p[1].Run.Wall),
				ratio(p[1].Run.Wall.Seconds(), p[0].Run.Wall.Seconds()))
		}
	}
	fmt.Fprint(w, restore)
}

// pairs returns the (drctl, restic) results of the steps both completed.
func (b *benchmark) pairs() [][2]result {
	byStep := map[string]map[string]result{}
	var order []string
	for _, r := range b.results {
		if byStep[r.Step] == nil {
			byStep[r.Step] = map[string]result{}
			order = append(order, r.Step)
		}
		byStep[r.Step][r.Tool] = r
	}
	var out [][2]result
	for _, step := range order {
		d, okD := byStep[step]["drctl"]
		r, okR := byStep[step]["restic"]
		if okD && okR && d.Err == nil && r.Err == nil && !d.Skipped && !r.Skipped {
			out = append(out, [2]result{d, r})
		}
	}
	return out
}

func writeNotes(w io.Writer, b *benchmark) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Notes: MB/s = image size / wall time (1 MB = 10^6 bytes); max RSS from wait4 rusage; repo + = apparent bytes and files added to the")
	fmt.Fprintln(w, "repository directory; read/new/stored/uploaded/objects as each tool reports them in its --json summary (restic: total_bytes_processed,")
	fmt.Fprintln(w, "data_added, data_added_packed; n/a = not reported). restic restores with its defaults (no --sparse).")
	var failures []string
	for _, r := range b.results {
		if r.Err != nil {
			failures = append(failures, fmt.Sprintf("- %s %s: %v", r.Tool, r.Step, r.Err))
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(w, "\n### Failures\n\n%s\n", strings.Join(failures, "\n"))
	}
}

func check(r result) string {
	switch {
	case r.Err != nil:
		msg, _, _ := strings.Cut(r.Err.Error(), "\n")
		if len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		return "FAILED: " + strings.ReplaceAll(msg, "|", "/")
	case r.Verify != "":
		return r.Verify
	default:
		return "ok"
	}
}

func mbps(size int64, d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return strconv.FormatFloat(float64(size)/1e6/d.Seconds(), 'f', 0, 64)
}

func optMiB(v int64) string {
	if v < 0 {
		return "n/a"
	}
	return mib(v)
}

func optInt(v int64) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.FormatInt(v, 10)
}

// ratio formats a/b as "0.12×", or n/a when b is not positive.
func ratio(a, b float64) string {
	if b <= 0 || a < 0 {
		return "n/a"
	}
	r := a / b
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f×", r)
	default:
		return fmt.Sprintf("%.3f×", r)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no (needs root; figures include page-cache effects)"
}
