package recovery

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/drctl/drctl/repo"
)

// writeSpec stores what the recovery side needs to boot the restored disks:
// the snapshot's identity, hardware and disk list, without the map pages.
func writeSpec(snap *repo.Snapshot, path string, overwrite bool) error {
	type disk struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		Bus    string `json:"bus,omitempty"`
		Format string `json:"format,omitempty"`
		Source string `json:"source,omitempty"`
	}
	spec := struct {
		VM          string         `json:"vm"`
		Snapshot    string         `json:"snapshot"`
		Time        string         `json:"time"`
		Consistency string         `json:"consistency"`
		Hardware    *repo.Hardware `json:"hardware,omitempty"`
		Disks       []disk         `json:"disks"`
	}{VM: snap.VM, Snapshot: snap.ID, Time: snap.Time.Format("2006-01-02T15:04:05Z07:00"), Consistency: snap.Consistency, Hardware: snap.Hardware}
	for _, d := range snap.Disks {
		spec.Disks = append(spec.Disks, disk{Name: d.Name, Size: d.Size, Bus: d.Bus, Format: d.Format, Source: d.Source})
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode vm spec: %w", err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if !overwrite {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("write vm spec: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write vm spec %s: %w", path, err)
	}
	return f.Close()
}
