package report

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// px is an SVG coordinate or length. It prints with at most two decimals:
// the page stays small and diffable, and nobody sees a hundredth of a
// pixel.
type px float64

func (p px) String() string {
	return strconv.FormatFloat(math.Round(float64(p)*100)/100, 'f', -1, 64)
}

// The timeline's layout, in SVG user units (the <svg> scales to the page).
const (
	svgWidth    = 1000.0
	plotLeft    = 170.0 // room for the lane labels
	plotRight   = 955.0 // room for the last tick label
	rowHeight   = 16.0
	rowGap      = 4.0
	lanePad     = 6.0
	minLane     = 40.0 // two lines of lane label
	eventRow    = 15.0
	charWidth   = 6.6 // a generous average glyph width at 11px, for fitting labels
	labelGap    = 4.0
	minBarWidth = 1.0 // a sub-pixel check would vanish: one pixel still shows it ran
)

type timeline struct {
	Width, Height           px
	PlotLeft, PlotRight     px
	LanesTop, LanesBottom   px
	AxisLabelY, AxisTitleY  px
	AxisTitleX              px
	LegendY                 px
	PxPerSecond             string
	Lanes                   []lane
	Ticks                   []tick
	Events                  []eventMark
	Legend                  []legendItem
	AriaLabel               string
	LegendTextY, TickBottom px
}

type lane struct {
	VM, Label, Status, StatusClass string
	Y, H, LabelY, StatusY          px
	Stripe                         bool
	Note                           string
	NoteY                          px
	Bars                           []bar
}

type bar struct {
	Kind, Class, Title, Label string
	Seconds                   string
	X, Y, W, H                px
	LabelX, LabelY            px
	LabelClass                string
}

type tick struct {
	X       px
	Seconds int64
	Label   string
}

type eventMark struct {
	X, LabelX, LabelY, Y1 px
	Anchor, Label         string
}

type legendItem struct {
	X, TextX     px
	Class, Label string
	Line         bool
	LineX        px
}

// textWidth estimates the width of a label: there is no font metrics at
// render time, so labels are fitted with a margin.
func textWidth(s string) float64 {
	return float64(utf8.RuneCountInString(s)) * charWidth
}

// end is the last instant the timeline must show.
func (d *Drill) end() time.Time {
	end := d.Finished
	later := func(t time.Time) {
		if t.After(end) {
			end = t
		}
	}
	later(d.TornDown)
	for _, e := range d.Events {
		later(e.Time)
	}
	for _, v := range d.VMs {
		later(v.RestoreEnd)
		later(v.Healthy)
		for _, c := range v.Checks {
			later(c.Finished)
		}
	}
	return end
}

// tickStep picks a round step that gives at most eight intervals.
func tickStep(total float64) int64 {
	steps := []int64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}
	for _, s := range steps {
		if total/float64(s) <= 8 {
			return s
		}
	}
	return int64(math.Ceil(total/8/86400)) * 86400
}

func tickLabel(s int64) string {
	switch {
	case s == 0:
		return "0"
	case s < 60:
		return strconv.FormatInt(s, 10) + " s"
	case s < 3600:
		return pair(s/60, "min", s%60, "s")
	case s < 86400:
		return pair(s/3600, "h", s%3600/60, "min")
	}
	return pair(s/86400, "d", s%86400/3600, "h")
}

func (d *Drill) timeline() timeline {
	total := d.since(d.end())
	if total <= 0 || d.Started.IsZero() {
		total = 1
	}
	scale := (plotRight - plotLeft) / total
	x := func(t time.Time) float64 {
		return plotLeft + math.Max(0, math.Min(total, d.since(t)))*scale
	}
	tl := timeline{
		Width: svgWidth, PlotLeft: plotLeft, PlotRight: plotRight,
		PxPerSecond: strconv.FormatFloat(scale, 'g', 10, 64),
		AriaLabel:   "Timeline of drill " + d.ID + ": restore, boot and checks of each VM, in seconds since the drill started",
	}

	y := 8.0
	for _, e := range d.Events {
		label := e.What + " (+" + FormatSeconds(d.since(e.Time)) + ")"
		if e.VM != "" {
			label = e.VM + ": " + label
		}
		m := eventMark{X: px(x(e.Time)), LabelY: px(y + 11), Y1: px(y + 13), Label: label, Anchor: "start"}
		m.LabelX = m.X + 3
		if float64(m.X)+3+textWidth(label) > svgWidth {
			m.Anchor, m.LabelX = "end", m.X-3
		}
		tl.Events = append(tl.Events, m)
		y += eventRow
	}
	y += 4
	tl.LanesTop = px(y)

	for i, v := range d.VMs {
		ln := lane{VM: v.VM, Label: v.VM, Status: statusWord(v.Status), StatusClass: "fail", Stripe: i%2 == 0, Y: px(y)}
		switch v.Status {
		case StatusPassed:
			ln.StatusClass = "pass"
		case StatusSkipped:
			ln.StatusClass = "skip"
		}
		if utf8.RuneCountInString(ln.Label) > 22 {
			ln.Label = string([]rune(ln.Label)[:21]) + "…"
		}
		row := func(r int) float64 { return y + lanePad + float64(r)*(rowHeight+rowGap) }

		// Row 0: restore then boot, which follow each other.
		span := func(kind string, from, to time.Time, reached bool, name, short string) {
			if from.IsZero() {
				return
			}
			class := "bar " + kind
			if !reached {
				to = d.Finished
				class += " failed"
			}
			if to.Before(from) {
				to = from
			}
			secs := to.Sub(from).Seconds()
			b := bar{Kind: kind, Class: class, Seconds: strconv.FormatFloat(secs, 'f', -1, 64),
				X: px(x(from)), Y: px(row(0)), H: rowHeight, LabelClass: "bar-label"}
			b.W = px(math.Max(minBarWidth, x(to)-x(from)))
			b.Title = v.VM + ": " + name + " " + FormatSeconds(secs)
			for _, l := range []string{name + " " + FormatSeconds(secs), short + " " + FormatSeconds(secs), short} {
				if textWidth(l)+8 <= float64(b.W) {
					b.Label, b.LabelX, b.LabelY = l, b.X+4, px(row(0)+12)
					break
				}
			}
			ln.Bars = append(ln.Bars, b)
		}
		span("restore", v.RestoreStart, v.RestoreEnd, !v.RestoreEnd.IsZero(), "restore", "restore")
		bootName, bootShort := "boot to healthy", "boot"
		if v.Healthy.IsZero() {
			bootName, bootShort = "boot, never healthy", "never healthy"
		}
		span("boot", v.BootStart, v.Healthy, !v.Healthy.IsZero(), bootName, bootShort)

		// Checks below, packed into as few rows as keep both bars and
		// their labels from overlapping (drill-only checks can run side
		// by side).
		order := make([]int, 0, len(v.Checks))
		for j, c := range v.Checks {
			if !c.Started.IsZero() {
				order = append(order, j)
			}
		}
		slices.SortStableFunc(order, func(a, b int) int { return v.Checks[a].Started.Compare(v.Checks[b].Started) })
		var rowEnds []float64
		for _, j := range order {
			c := v.Checks[j]
			to := c.Finished
			if to.IsZero() || to.Before(c.Started) {
				to = c.Started
			}
			secs := to.Sub(c.Started).Seconds()
			x1 := x(c.Started)
			w := math.Max(minBarWidth, x(to)-x1)
			label := c.Name + " " + okWord(c.OK)
			lw := textWidth(label)
			from, until := x1, x1+w+labelGap+lw
			lx, anchor := x1+w+labelGap, "bar-label outside"
			if until > svgWidth {
				// No room on the right: the label goes before the bar.
				from, until = x1-labelGap-lw, x1+w
				lx, anchor = x1-labelGap, "bar-label outside before"
			}
			r := 0
			for r < len(rowEnds) && rowEnds[r]+labelGap > from {
				r++
			}
			if r == len(rowEnds) {
				rowEnds = append(rowEnds, 0)
			}
			rowEnds[r] = until
			class := "bar check pass"
			if !c.OK {
				class = "bar check failed"
			}
			title := v.VM + ": check " + c.Name + " (" + c.Kind
			if c.DrillOnly {
				title += ", drill-only"
			}
			title += ") " + okWord(c.OK) + " after " + FormatSeconds(secs)
			ln.Bars = append(ln.Bars, bar{Kind: "check", Class: class, Title: title, Label: label,
				Seconds: strconv.FormatFloat(secs, 'f', -1, 64),
				X:       px(x1), Y: px(row(r + 1)), W: px(w), H: rowHeight,
				LabelX: px(lx), LabelY: px(row(r+1) + 12), LabelClass: anchor})
		}
		rows := 1 + len(rowEnds)
		h := math.Max(minLane, 2*lanePad+float64(rows)*rowHeight+float64(rows-1)*rowGap)
		ln.H, ln.LabelY, ln.StatusY = px(h), px(y+18), px(y+33)
		if len(ln.Bars) == 0 {
			ln.Note, ln.NoteY = "not started", px(row(0)+12)
		}
		tl.Lanes = append(tl.Lanes, ln)
		y += h
	}
	tl.LanesBottom = px(y)

	step := tickStep(total)
	for s := int64(0); float64(s) <= total+1e-9; s += step {
		tl.Ticks = append(tl.Ticks, tick{X: px(plotLeft + float64(s)*scale), Seconds: s, Label: tickLabel(s)})
	}
	tl.TickBottom = px(y + 5)
	tl.AxisLabelY = px(y + 18)
	tl.AxisTitleY = px(y + 36)
	tl.AxisTitleX = px((plotLeft + plotRight) / 2)
	tl.LegendY = px(y + 52)
	tl.LegendTextY = tl.LegendY + 10

	lx := 10.0
	for _, it := range []struct{ class, label string }{
		{"bar restore", "restore"},
		{"bar boot", "boot to healthy"},
		{"bar boot failed", "never healthy / failed (hatched)"},
		{"bar check pass", "check PASS"},
		{"bar check failed", "check FAIL (hatched)"},
		{"event", "event"},
	} {
		li := legendItem{X: px(lx), TextX: px(lx + 20), Class: it.class, Label: it.label}
		if it.class == "event" {
			li.Line, li.LineX = true, px(lx+7)
		}
		tl.Legend = append(tl.Legend, li)
		lx += 20 + textWidth(it.label) + 16
	}
	tl.Height = tl.LegendY + 20
	return tl
}
