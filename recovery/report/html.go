package report

import (
	"bufio"
	"fmt"
	"html/template"
	"io"
	"strconv"
)

// page is what the HTML template is given: every value already formatted,
// so that the template only lays out.
type page struct {
	Title, Verdict, VerdictClass string
	ID, Plan                     string
	Summary                      []summaryItem
	Rows                         []vmRow
	Checks                       []vmChecks
	Timeline                     timeline
	Events                       []string
}

type vmChecks struct {
	VM, Status, StatusClass, Error string
	Checks                         []checkRow
}

type checkRow struct {
	Name, Kind, DrillOnly, Result, Class string
	Duration, Attempts, Output, Err      string
}

// WriteHTML writes the drill report as one self-contained HTML5 page:
// inline CSS and SVG, no scripts and no external resources, so that it
// can be archived, mailed and opened offline as it is. Results are
// spelled out as words besides their colours, for black-and-white print.
// The markup is also well-formed XML, which lets tests check it
// strictly without an HTML parser.
func (d *Drill) WriteHTML(w io.Writer) error {
	p := page{
		Title: "DR drill " + d.Plan + " — " + d.Verdict(), Verdict: d.Verdict(), VerdictClass: "fail",
		ID: d.ID, Plan: d.Plan, Summary: d.summary(), Timeline: d.timeline(),
	}
	if d.Passed {
		p.VerdictClass = "pass"
	}
	for _, v := range d.VMs {
		r := d.vmRow(v)
		p.Rows = append(p.Rows, r)
		vc := vmChecks{VM: v.VM, Status: r.Status, StatusClass: r.StatusClass, Error: v.Error}
		for _, c := range v.Checks {
			cr := checkRow{Name: c.Name, Kind: c.Kind, DrillOnly: "no", Result: okWord(c.OK), Class: "pass",
				Duration: "—", Attempts: strconv.Itoa(c.Attempts), Output: c.Output, Err: c.Err}
			if c.DrillOnly {
				cr.DrillOnly = "yes"
			}
			if !c.OK {
				cr.Class = "fail"
			}
			if !c.Started.IsZero() && !c.Finished.IsZero() {
				cr.Duration = FormatSeconds(c.Duration().Seconds())
			}
			vc.Checks = append(vc.Checks, cr)
		}
		p.Checks = append(p.Checks, vc)
	}
	for _, e := range d.Events {
		s := formatTime(e.Time) + " (+" + FormatSeconds(d.since(e.Time)) + "): "
		if e.VM != "" {
			s += e.VM + ": "
		}
		p.Events = append(p.Events, s+e.What)
	}
	bw := bufio.NewWriter(w)
	if err := htmlTemplate.Execute(bw, p); err != nil {
		return fmt.Errorf("render drill report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write drill report: %w", err)
	}
	return nil
}

var htmlTemplate = template.Must(template.New("drill").Parse(htmlSource))

// htmlSource keeps to markup that is both HTML5 and well-formed XML:
// void elements are self-closed and no named entities besides XML's are
// used.
const htmlSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="generator" content="drctl"/>
<title>{{.Title}}</title>
<style>
* { -webkit-print-color-adjust: exact; print-color-adjust: exact; box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", sans-serif; color: #1b1f24; background: #fff; max-width: 1140px; margin: 24px auto; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 26px; margin: 0 0 16px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 2px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.verdict { display: inline-block; padding: 1px 12px; border-radius: 4px; color: #fff; letter-spacing: 0.04em; }
.verdict.pass { background: #1f7a3d; }
.verdict.fail { background: #b42318; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dt { font-weight: 600; color: #444c56; }
dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid #c9ced6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.sub { display: block; color: #57606a; font-size: 12px; white-space: nowrap; }
.status { font-weight: 700; white-space: nowrap; }
.status.pass { color: #1f7a3d; }
.status.fail { color: #b42318; }
.status.skip { color: #6b7280; }
tr.fail td { background: #fdf0ef; }
table.checks { table-layout: fixed; }
table.checks th:nth-child(1) { width: 17%; }
table.checks th:nth-child(2) { width: 10%; }
table.checks th:nth-child(3), table.checks th:nth-child(4), table.checks th:nth-child(6) { width: 8%; }
table.checks th:nth-child(5) { width: 9%; }
.error { color: #b42318; margin: 4px 0; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-size: 12px; background: #f6f8fa; padding: 4px 6px; max-height: 24em; overflow: auto; }
code { font-size: 13px; }
.none { color: #6b7280; }
#timeline { width: 100%; height: auto; display: block; }
#timeline text { font-family: inherit; font-size: 11px; fill: #1b1f24; }
#timeline .lane-bg { fill: #f4f6f9; }
#timeline .grid { stroke: #dde1e7; stroke-width: 1; }
#timeline .axis { stroke: #1b1f24; stroke-width: 1; }
#timeline .tick-label, #timeline .axis-title { text-anchor: middle; }
#timeline .lane-name { font-weight: 700; }
#timeline .lane-status.pass { fill: #1f7a3d; font-weight: 700; }
#timeline .lane-status.fail { fill: #b42318; font-weight: 700; }
#timeline .lane-status.skip { fill: #6b7280; font-weight: 700; }
#timeline .bar { stroke: #1b1f24; stroke-width: 0.5; }
#timeline .bar.restore { fill: #3b6fd4; }
#timeline .bar.boot { fill: #7c5cc4; }
#timeline .bar.check.pass { fill: #2e9e5b; }
#timeline .bar.failed { fill: url(#hatch); }
#timeline .bar-label { fill: #fff; font-weight: 600; stroke: rgba(0, 0, 0, 0.5); stroke-width: 2.5px; paint-order: stroke; }
#timeline .bar-label.outside { fill: #1b1f24; stroke: none; font-weight: 400; }
#timeline .bar-label.before { text-anchor: end; }
#timeline .event-line { stroke: #1b1f24; stroke-width: 1.2; stroke-dasharray: 4 3; }
#timeline .note { fill: #6b7280; font-style: italic; }
footer { margin-top: 32px; font-size: 12px; color: #57606a; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 11pt; }
  pre { max-height: none; overflow: visible; }
  .vm-checks, #timeline, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
}
</style>
</head>
<body>
<h1>DR drill {{.Plan}} — <span class="verdict {{.VerdictClass}}">{{.Verdict}}</span></h1>

<section id="summary">
<h2>Summary</h2>
<dl>
{{- range .Summary}}
<dt>{{.Label}}</dt><dd>{{.Value}}</dd>
{{- end}}
</dl>
</section>

<section>
<h2>Virtual machines</h2>
<table id="vms">
<thead><tr><th>VM</th><th>Group</th><th>Recovery point</th><th>Consistency</th><th>RPO</th><th>Restore</th><th>Boot to healthy</th><th>RTO</th><th>Status</th></tr></thead>
<tbody>
{{- range .Rows}}
<tr class="vm {{.StatusClass}}" data-vm="{{.VM}}"><td>{{.VM}}</td><td>{{.Group}}</td><td><code>{{.Point}}</code>{{if .PointTime}}<span class="sub">{{.PointTime}}</span>{{end}}</td><td>{{.Consistency}}</td><td class="num">{{.RPO}}</td><td class="num">{{.Restore}}{{if .Restored}}<span class="sub">{{.Restored}}</span>{{end}}</td><td class="num">{{.Boot}}</td><td class="num">{{.RTO}}</td><td class="status {{.StatusClass}}">{{.Status}}</td></tr>
{{- else}}
<tr><td colspan="9" class="none">no VMs</td></tr>
{{- end}}
</tbody>
</table>
</section>

<section id="checks">
<h2>Checks</h2>
{{- range .Checks}}
<div class="vm-checks" data-vm="{{.VM}}">
<h3>{{.VM}} — <span class="status {{.StatusClass}}">{{.Status}}</span></h3>
{{- if .Error}}
<p class="error">Error: {{.Error}}</p>
{{- end}}
{{- if .Checks}}
<table class="checks">
<thead><tr><th>Check</th><th>Kind</th><th>Drill-only</th><th>Result</th><th>Duration</th><th>Attempts</th><th>Output</th></tr></thead>
<tbody>
{{- range .Checks}}
<tr class="check {{.Class}}"><td>{{.Name}}</td><td>{{.Kind}}</td><td>{{.DrillOnly}}</td><td class="status {{.Class}}">{{.Result}}</td><td class="num">{{.Duration}}</td><td class="num">{{.Attempts}}</td><td>{{if .Err}}<p class="error">{{.Err}}</p>{{end}}{{if .Output}}<pre>{{.Output}}</pre>{{else if not .Err}}<span class="none">—</span>{{end}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="none">No checks ran.</p>
{{- end}}
</div>
{{- end}}
</section>

<section>
<h2>Timeline</h2>
{{- with .Timeline}}
<svg id="timeline" role="img" aria-label="{{.AriaLabel}}" width="{{.Width}}" height="{{.Height}}" viewBox="0 0 {{.Width}} {{.Height}}" data-px-per-second="{{.PxPerSecond}}">
<defs>
<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d64545"/><line x1="1.5" y1="0" x2="1.5" y2="6" stroke="#7a1414" stroke-width="3"/></pattern>
</defs>
{{- $top := .LanesTop}}{{$bottom := .LanesBottom}}{{$right := .PlotRight}}{{$left := .PlotLeft}}{{$w := .Width}}
{{- range .Lanes}}
<g class="lane" data-vm="{{.VM}}">
{{- if .Stripe}}<rect class="lane-bg" x="0" y="{{.Y}}" width="{{$w}}" height="{{.H}}"/>{{end}}
<title>{{.VM}}: {{.Status}}</title>
<text class="lane-name" x="8" y="{{.LabelY}}">{{.Label}}</text>
<text class="lane-status {{.StatusClass}}" x="8" y="{{.StatusY}}">{{.Status}}</text>
{{- if .Note}}
<text class="note" x="{{$left}}" dx="4" y="{{.NoteY}}">{{.Note}}</text>
{{- end}}
</g>
{{- end}}
{{- range .Ticks}}
<line class="grid" x1="{{.X}}" y1="{{$top}}" x2="{{.X}}" y2="{{$bottom}}"/>
{{- end}}
{{- range .Lanes}}
<g class="bars" data-vm="{{.VM}}">
{{- range .Bars}}
<rect class="{{.Class}}" data-kind="{{.Kind}}" data-seconds="{{.Seconds}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>
{{- if .Label}}<text class="{{.LabelClass}}" x="{{.LabelX}}" y="{{.LabelY}}">{{.Label}}</text>{{end}}
{{- end}}
</g>
{{- end}}
<line class="axis" x1="{{.PlotLeft}}" y1="{{$bottom}}" x2="{{.PlotRight}}" y2="{{$bottom}}"/>
<g class="ticks">
{{- $tb := .TickBottom}}{{$ly := .AxisLabelY}}
{{- range .Ticks}}
<line class="axis" x1="{{.X}}" y1="{{$bottom}}" x2="{{.X}}" y2="{{$tb}}"/><text class="tick-label" data-seconds="{{.Seconds}}" x="{{.X}}" y="{{$ly}}">{{.Label}}</text>
{{- end}}
</g>
<text class="axis-title" x="{{.AxisTitleX}}" y="{{.AxisTitleY}}">time since the drill started (the declared-lost instant)</text>
{{- range .Events}}
<g class="event"><line class="event-line" x1="{{.X}}" y1="{{.Y1}}" x2="{{.X}}" y2="{{$bottom}}"/><text x="{{.LabelX}}" y="{{.LabelY}}" text-anchor="{{.Anchor}}">{{.Label}}</text></g>
{{- end}}
<g class="legend">
{{- $ly := .LegendY}}{{$ty := .LegendTextY}}
{{- range .Legend}}
{{- if .Line}}<line class="event-line" x1="{{.LineX}}" y1="{{$ly}}" x2="{{.LineX}}" y2="{{$ty}}"/>{{else}}<rect class="{{.Class}}" x="{{.X}}" y="{{$ly}}" width="14" height="10"/>{{end}}<text x="{{.TextX}}" y="{{$ty}}">{{.Label}}</text>
{{- end}}
</g>
</svg>
{{- end}}
{{- if .Events}}
<ul class="events">
{{- range .Events}}
<li>{{.}}</li>
{{- end}}
</ul>
{{- end}}
</section>

<footer>
<p>Drill record {{.ID}}, rendered by drctl. Times are UTC. RPO: from the recovery point to the drill's start (the instant the site is declared lost). RTO: from the drill's start to the VM passing its health checks. Boot to healthy: from starting the replica to it passing its health checks.</p>
</footer>
</body>
</html>
`
