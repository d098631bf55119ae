package report

import (
	"fmt"
	"math"
	"time"

	"github.com/drctl/drctl/internal/units"
)

// FormatSeconds formats a duration in seconds for people: "1.2 s",
// "42.0 s", "3 min 4 s", "2 h 5 min", "3 d 4 h". Below a minute tenths
// matter (a boot step); above, they are noise next to the minutes.
func FormatSeconds(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "?"
	}
	sign := ""
	if s < 0 {
		// Negative only with clock skew between hosts: show it rather
		// than hide it.
		sign, s = "-", -s
	}
	if s < 59.95 {
		return fmt.Sprintf("%s%.1f s", sign, s)
	}
	n := int64(math.Round(s))
	var out string
	switch {
	case n < 3600:
		out = pair(n/60, "min", n%60, "s")
	case n < 86400:
		out = pair(n/3600, "h", n%3600/60, "min")
	default:
		out = pair(n/86400, "d", n%86400/3600, "h")
	}
	return sign + out
}

func pair(a int64, au string, b int64, bu string) string {
	if b == 0 {
		return fmt.Sprintf("%d %s", a, au)
	}
	return fmt.Sprintf("%d %s %d %s", a, au, b, bu)
}

// formatTime formats an instant in UTC: a report is read at other sites
// and by auditors in other time zones.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// shortID is the prefix of a recovery point id that drctl's commands
// print and accept.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// statusWord is a VM's status as the word a report shows.
func statusWord(status string) string {
	switch status {
	case StatusPassed:
		return "PASS"
	case StatusSkipped:
		return "SKIPPED"
	}
	return "FAIL"
}

func okWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// vmRow is one VM as both the HTML and the Markdown table show it: the
// two must say the same.
type vmRow struct {
	VM, Group, Point, PointTime, Consistency string
	RPO, Restore, Restored, Boot, RTO        string
	Status, StatusClass, Error               string
}

func (d *Drill) vmRow(v VM) vmRow {
	r := vmRow{
		VM: v.VM, Group: v.Group, Point: shortID(v.Snapshot), Consistency: v.Consistency,
		RPO: "—", Restore: "—", Boot: "—", RTO: "—",
		Status: statusWord(v.Status), StatusClass: "fail", Error: v.Error,
	}
	switch v.Status {
	case StatusPassed:
		r.StatusClass = "pass"
	case StatusSkipped:
		r.StatusClass = "skip"
	}
	if r.Point == "" {
		r.Point = "—"
	}
	if r.Consistency == "" {
		r.Consistency = "—"
	}
	if !v.SnapshotTime.IsZero() {
		r.PointTime = formatTime(v.SnapshotTime)
		r.RPO = FormatSeconds(v.RPOSeconds)
	}
	if !v.RestoreEnd.IsZero() {
		r.Restore = FormatSeconds(v.RestoreSeconds)
	} else if !v.RestoreStart.IsZero() {
		r.Restore = "not finished"
	}
	if v.RestoredBytes > 0 {
		r.Restored = units.Bytes(v.RestoredBytes)
	}
	if !v.Healthy.IsZero() {
		r.Boot = FormatSeconds(v.BootSeconds)
		r.RTO = FormatSeconds(v.RTOSeconds)
	} else if !v.BootStart.IsZero() {
		r.Boot = "never healthy"
	}
	return r
}

// summaryItem is one line of a report's summary.
type summaryItem struct{ Label, Value string }

func (d *Drill) summary() []summaryItem {
	passed, failed, skipped := d.counts()
	vms := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		vms += fmt.Sprintf(", %d skipped", skipped)
	}
	vms += fmt.Sprintf(" (of %d)", len(d.VMs))
	items := []summaryItem{
		{"Result", d.Verdict()},
		{"Drill", d.ID},
		{"Plan", d.Plan},
		{"Site", d.Site},
	}
	if d.Host != "" {
		items = append(items, summaryItem{"Host", d.Host})
	}
	items = append(items,
		summaryItem{"Started (declared lost)", formatTime(d.Started)},
		summaryItem{"Finished", formatTime(d.Finished)},
	)
	if !d.Started.IsZero() && !d.Finished.IsZero() {
		items = append(items, summaryItem{"Duration", FormatSeconds(d.Finished.Sub(d.Started).Seconds())})
	}
	items = append(items, summaryItem{"VMs", vms}, summaryItem{"Isolation", d.Network})
	switch {
	case d.Kept:
		items = append(items, summaryItem{"Replicas", "kept running until " + formatTime(d.KeepUntil)})
	case !d.TornDown.IsZero():
		items = append(items, summaryItem{"Torn down", formatTime(d.TornDown)})
	default:
		items = append(items, summaryItem{"Torn down", "not recorded"})
	}
	if d.Error != "" {
		items = append(items, summaryItem{"Error", d.Error})
	}
	return items
}
