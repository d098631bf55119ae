package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the drill report as GitHub-flavoured Markdown, for
// pasting into a ticket: the verdict, a summary, the VM table, then the
// output of every failed check.
func (d *Drill) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }

	p("# DR drill %s — %s\n\n", mdText(d.Plan), d.Verdict())
	for _, it := range d.summary() {
		v := mdText(it.Value)
		if it.Label == "Drill" {
			v = mdCode(it.Value)
		}
		p("- **%s:** %s\n", it.Label, v)
	}

	p("\n| VM | Group | Recovery point | Consistency | RPO | Restore | Boot to healthy | RTO | Status |\n")
	p("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |\n")
	for _, v := range d.VMs {
		r := d.vmRow(v)
		point := mdCode(r.Point)
		if r.PointTime != "" {
			point += " " + r.PointTime
		}
		restore := r.Restore
		if r.Restored != "" {
			restore += " (" + r.Restored + ")"
		}
		status := "**" + r.Status + "**"
		p("| %s |\n", strings.Join([]string{mdCell(r.VM), mdCell(r.Group), point, mdCell(r.Consistency),
			r.RPO, restore, r.Boot, r.RTO, status}, " | "))
	}

	// Only what went wrong: a passed check's output is in the HTML
	// report, and would bury the failure in a ticket.
	var failed strings.Builder
	for _, v := range d.VMs {
		if v.Status == StatusPassed {
			continue
		}
		var checks []Check
		for _, c := range v.Checks {
			if !c.OK {
				checks = append(checks, c)
			}
		}
		if v.Error == "" && len(checks) == 0 {
			continue
		}
		fmt.Fprintf(&failed, "\n### %s — %s\n\n", mdText(v.VM), statusWord(v.Status))
		if v.Error != "" {
			fmt.Fprintf(&failed, "%s\n", mdText(v.Error))
		}
		for _, c := range checks {
			what := c.Kind
			if c.DrillOnly {
				what += ", drill-only"
			}
			fmt.Fprintf(&failed, "\n**Check %s** (%s) FAILED after %d attempts", mdText(c.Name), mdText(what), c.Attempts)
			if c.Err != "" {
				fmt.Fprintf(&failed, ": %s", mdText(c.Err))
			}
			failed.WriteString("\n")
			if c.Output != "" {
				failed.WriteString("\n" + mdFence(c.Output))
			}
		}
	}
	if failed.Len() > 0 {
		p("\n## Failures\n%s", failed.String())
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write drill report: %w", err)
	}
	return nil
}

// mdReplacer neutralises what would turn text into markup. Underscores are
// left alone: GitHub does not emphasise inside words, and VM names such as
// db_primary should stay readable in a plain-text ticket.
var mdReplacer = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "[", `\[`, "]", `\]`, "<", `\<`, ">", `\>`, "|", `\|`,
	"\r\n", " ", "\n", " ", "\r", " ",
)

// mdText escapes text for a Markdown line, pipes included, so that the
// same function serves table cells.
func mdText(s string) string {
	return mdReplacer.Replace(s)
}

func mdCell(s string) string {
	if s == "" {
		return "—"
	}
	return mdText(s)
}

// mdCode is an inline code span; ids are hex, but a span must never be
// broken by a backtick or a pipe.
func mdCode(s string) string {
	if s == "" || s == "—" || strings.ContainsAny(s, "`|\n") {
		return mdText(s)
	}
	return "`" + s + "`"
}

// mdFence puts guest output in a fenced code block whose fence is longer
// than any run of backticks in it (CommonMark's rule), so the output
// cannot close the block early, and it is shown unchanged.
func mdFence(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", max(3, longest+1))
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return fence + "text\n" + s + fence + "\n"
}
