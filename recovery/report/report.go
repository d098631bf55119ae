// Package report holds the record of a DR drill and renders it for the
// people who have to trust it: JSON for the repository and other tools,
// one self-contained HTML page for auditors (it must still open, print
// and make sense years later, offline and in black and white), and
// Markdown for pasting into a ticket.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// FormatVersion is the version of the drill record that this package
// writes and reads. A reader must refuse newer records rather than
// misreport a drill it only half understands.
const FormatVersion = 1

// VM statuses.
const (
	StatusPassed  = "passed"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// Drill is the record of one drill: stored as JSON in the repository
// (drills/<plan>/<time>-<id>.json) and rendered as HTML or Markdown.
type Drill struct {
	Version int    `json:"version"` // FormatVersion
	ID      string `json:"id"`
	Plan    string `json:"plan"`
	Site    string `json:"site"`
	Host    string `json:"host,omitempty"`
	// Started is the drill's "declared lost" instant: RPO and RTO are
	// measured from it.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Passed   bool      `json:"passed"`
	// Error says why the drill as a whole failed or was cut short (e.g.
	// "interrupted"); a VM's own failure is in its VM.Error.
	Error     string    `json:"error,omitempty"`
	Kept      bool      `json:"kept,omitempty"` // --keep: replicas left running
	KeepUntil time.Time `json:"keep_until,omitzero"`
	TornDown  time.Time `json:"torn_down,omitzero"`
	// Network says how the replicas were isolated, e.g. "QEMU user
	// networking, restrict=on (no route out)".
	Network string  `json:"network"`
	VMs     []VM    `json:"vms"`
	Events  []Event `json:"events,omitempty"` // extra timeline marks, e.g. teardown
}

// VM is one replica of a drill. Times are zero for the steps it did not
// reach.
type VM struct {
	VM           string    `json:"vm"`
	Group        string    `json:"group"`
	Snapshot     string    `json:"snapshot"` // recovery point id (16 hex)
	SnapshotTime time.Time `json:"snapshot_time,omitzero"`
	Consistency  string    `json:"consistency,omitempty"` // crash-consistent | app-consistent | none
	RPOSeconds   float64   `json:"rpo_seconds"`           // Started − SnapshotTime
	RestoreStart time.Time `json:"restore_start,omitzero"`
	RestoreEnd   time.Time `json:"restore_end,omitzero"`
	BootStart    time.Time `json:"boot_start,omitzero"`
	Healthy      time.Time `json:"healthy,omitzero"`
	// BootSeconds is boot to healthy; RTOSeconds is Healthy − Started.
	RestoreSeconds float64 `json:"restore_seconds,omitempty"`
	BootSeconds    float64 `json:"boot_to_healthy_seconds,omitempty"`
	RTOSeconds     float64 `json:"rto_seconds,omitempty"`
	RestoredBytes  int64   `json:"restored_bytes,omitempty"`
	Status         string  `json:"status"` // StatusPassed, StatusFailed or StatusSkipped
	Error          string  `json:"error,omitempty"`
	Checks         []Check `json:"checks,omitempty"`
}

// Check is one health check, or drill-only check, of a VM.
type Check struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"` // serial | tcp | guest_agent | command
	DrillOnly bool      `json:"drill_only,omitempty"`
	OK        bool      `json:"ok"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	Attempts  int       `json:"attempts"`
	Output    string    `json:"output,omitempty"` // capped at 4 KiB by the producer
	Err       string    `json:"error,omitempty"`
}

// Event is an extra mark on the timeline.
type Event struct {
	Time time.Time `json:"time"`
	VM   string    `json:"vm,omitempty"` // "" = the whole drill
	What string    `json:"what"`
}

// WriteJSON writes the drill record as indented JSON.
func (d *Drill) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Guest output is full of < > &: \u003c in the stored record would
	// make it needlessly hard to read by hand.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("write drill record: %w", err)
	}
	return nil
}

// Parse reads a drill record written by WriteJSON. It refuses anything
// that is not a drill record, and records of a version it does not know.
func Parse(data []byte) (*Drill, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("parse drill record: empty")
	}
	var d Drill
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("parse drill record: %w", err)
	}
	switch {
	case d.Version == 0:
		return nil, errors.New("parse drill record: not a drill record (no version)")
	case d.Version > FormatVersion:
		return nil, fmt.Errorf("parse drill record: version %d is newer than this drctl understands (%d): upgrade drctl", d.Version, FormatVersion)
	case d.Version != FormatVersion:
		return nil, fmt.Errorf("parse drill record: unknown version %d (want %d)", d.Version, FormatVersion)
	case d.ID == "" || d.Plan == "":
		return nil, errors.New("parse drill record: not a drill record (no id or plan)")
	}
	return &d, nil
}

// Verdict is "PASSED" or "FAILED": words, so that a report says it
// without colour.
func (d *Drill) Verdict() string {
	if d.Passed {
		return "PASSED"
	}
	return "FAILED"
}

// counts returns how many VMs passed, failed and were skipped.
func (d *Drill) counts() (passed, failed, skipped int) {
	for _, v := range d.VMs {
		switch v.Status {
		case StatusPassed:
			passed++
		case StatusSkipped:
			skipped++
		default:
			failed++
		}
	}
	return passed, failed, skipped
}

// since is the number of seconds from the drill's start to t.
func (d *Drill) since(t time.Time) float64 {
	return t.Sub(d.Started).Seconds()
}

// Duration is how long the check ran, all attempts together.
func (c Check) Duration() time.Duration {
	if c.Started.IsZero() || c.Finished.IsZero() {
		return 0
	}
	return c.Finished.Sub(c.Started)
}
