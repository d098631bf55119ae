package qmp

import (
	"context"
	"errors"
)

// StatusInfo is the VM's run state (QAPI StatusInfo).
type StatusInfo struct {
	Running bool `json:"running"`
	// Status is the run state: "running", "paused", "prelaunch" (started
	// with -S), "shutdown", "inmigrate", "postmigrate", "internal-error"...
	Status string `json:"status"`
}

// CPUInfoFast describes a vCPU (QAPI CpuInfoFast).
type CPUInfoFast struct {
	CPUIndex int    `json:"cpu-index"`
	QOMPath  string `json:"qom-path"`
	ThreadID int    `json:"thread-id"`
	Target   string `json:"target"`
	// Props holds the topology ids present, e.g. socket-id, core-id.
	Props map[string]int64 `json:"props,omitempty"`
}

// MemorySizeSummary is the VM's memory (QAPI MemoryInfo).
type MemorySizeSummary struct {
	// BaseMemory is the RAM given with -m, in bytes.
	BaseMemory    uint64 `json:"base-memory"`
	PluggedMemory uint64 `json:"plugged-memory,omitempty"`
}

// VersionInfo is QEMU's version (QAPI VersionInfo).
type VersionInfo struct {
	QEMU VersionTriple `json:"qemu"`
	// Package is the distribution's version string, e.g. "Debian 1:7.2+dfsg-7".
	Package string `json:"package"`
}

// PCIInfo is one PCI bus (QAPI PciInfo).
type PCIInfo struct {
	Bus     int             `json:"bus"`
	Devices []PCIDeviceInfo `json:"devices"`
}

// PCIDeviceInfo is one PCI function (QAPI PciDeviceInfo, abridged).
type PCIDeviceInfo struct {
	Bus       int `json:"bus"`
	Slot      int `json:"slot"`
	Function  int `json:"function"`
	ClassInfo struct {
		Desc  string `json:"desc,omitempty"`
		Class int    `json:"class"`
	} `json:"class_info"`
	ID struct {
		Device          int `json:"device"`
		Vendor          int `json:"vendor"`
		Subsystem       int `json:"subsystem,omitempty"`
		SubsystemVendor int `json:"subsystem-vendor,omitempty"`
	} `json:"id"`
	// QDevID is the -device id, "" for devices without one.
	QDevID string `json:"qdev_id"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (StatusInfo, error) {
	var s StatusInfo
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// QueryCPUsFast lists the vCPUs without interrupting them.
func (c *Client) QueryCPUsFast(ctx context.Context) ([]CPUInfoFast, error) {
	var cpus []CPUInfoFast
	err := c.Execute(ctx, "query-cpus-fast", nil, &cpus)
	return cpus, err
}

// QueryMemorySizeSummary returns the VM's memory size.
func (c *Client) QueryMemorySizeSummary(ctx context.Context) (MemorySizeSummary, error) {
	var m MemorySizeSummary
	err := c.Execute(ctx, "query-memory-size-summary", nil, &m)
	return m, err
}

// QueryVersion returns QEMU's version; Version has it from the greeting
// without a round trip.
func (c *Client) QueryVersion(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.Execute(ctx, "query-version", nil, &v)
	return v, err
}

// QueryPCI lists the PCI buses and their devices.
func (c *Client) QueryPCI(ctx context.Context) ([]PCIInfo, error) {
	var buses []PCIInfo
	err := c.Execute(ctx, "query-pci", nil, &buses)
	return buses, err
}

// Stop pauses the vCPUs (event STOP). Block jobs and exports keep working.
func (c *Client) Stop(ctx context.Context) error {
	return c.Execute(ctx, "stop", nil, nil)
}

// Cont resumes the vCPUs (event RESUME), also starting a VM that was
// started with -S.
func (c *Client) Cont(ctx context.Context) error {
	return c.Execute(ctx, "cont", nil, nil)
}

// Quit makes QEMU exit cleanly, which also stores persistent dirty bitmaps
// in their qcow2 files. QEMU sends the event SHUTDOWN before its reply and
// closes the socket right after, so a connection that ends instead of
// replying also counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// HumanMonitorCommand runs an HMP (human monitor) command and returns its
// output. HMP failures are part of that text, not a QMP error: e.g. an
// unknown command returns "unknown command: 'x'". Output of "qemu-io" goes
// to QEMU's stdout, not here.
func (c *Client) HumanMonitorCommand(ctx context.Context, command string) (string, error) {
	var out string
	err := c.Execute(ctx, "human-monitor-command", map[string]string{"command-line": command}, &out)
	return out, err
}
