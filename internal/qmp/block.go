package qmp

import "context"

// BlockDeviceInfo describes one block node (QAPI BlockDeviceInfo), as
// listed by query-named-block-nodes and in BlockInfo.Inserted.
type BlockDeviceInfo struct {
	NodeName string `json:"node-name"`
	// Driver is the node's driver: "qcow2", "raw" (format nodes), "file"
	// (protocol nodes), "copy-before-write" (inserted by a fleecing backup).
	Driver           string    `json:"drv"`
	File             string    `json:"file"`
	ReadOnly         bool      `json:"ro"`
	BackingFile      string    `json:"backing_file,omitempty"`
	BackingFileDepth int       `json:"backing_file_depth"`
	Image            ImageInfo `json:"image"`
	// DirtyBitmaps lists the node's bitmaps; they live on format nodes.
	DirtyBitmaps []BlockDirtyInfo `json:"dirty-bitmaps,omitempty"`
}

// ImageInfo describes the image under a node (QAPI ImageInfo).
type ImageInfo struct {
	Filename string `json:"filename"`
	Format   string `json:"format"`
	// VirtualSize is the guest-visible size in bytes; a fleecing target
	// must have exactly the size of its source.
	VirtualSize     int64      `json:"virtual-size"`
	ActualSize      int64      `json:"actual-size,omitempty"`
	ClusterSize     int64      `json:"cluster-size,omitempty"`
	DirtyFlag       bool       `json:"dirty-flag,omitempty"`
	BackingFilename string     `json:"backing-filename,omitempty"`
	BackingImage    *ImageInfo `json:"backing-image,omitempty"`
}

// BlockDirtyInfo describes a dirty bitmap (QAPI BlockDirtyInfo).
type BlockDirtyInfo struct {
	Name string `json:"name"`
	// Recording is false for a disabled (frozen) bitmap; only those can be
	// exported over a read-only NBD export.
	Recording bool `json:"recording"`
	// Persistent bitmaps are stored in the qcow2 file when QEMU exits
	// cleanly.
	Persistent bool `json:"persistent"`
	// Busy is true while a job or an export uses the bitmap.
	Busy bool `json:"busy"`
	// Inconsistent is true for a persistent bitmap that QEMU did not store
	// cleanly (it crashed or was killed): the bitmap cannot be used and
	// must be removed, and the next backup must be a full one.
	Inconsistent bool `json:"inconsistent,omitempty"`
	// Count is the number of dirty bytes.
	Count int64 `json:"count"`
	// Granularity is the bytes each bit covers (the qcow2 cluster size,
	// 64 KiB, by default).
	Granularity uint32 `json:"granularity"`
}

// BlockInfo describes a block backend, usually a guest disk (QAPI
// BlockInfo).
type BlockInfo struct {
	// Device is the legacy drive id; "" for disks set up with -blockdev.
	Device string `json:"device"`
	// QDev is the attached device's id or QOM path, e.g.
	// "/machine/peripheral/vdisk0/virtio-backend" for virtio-blk-pci.
	QDev      string `json:"qdev,omitempty"`
	Type      string `json:"type"`
	Removable bool   `json:"removable"`
	Locked    bool   `json:"locked"`
	TrayOpen  bool   `json:"tray_open,omitempty"`
	IOStatus  string `json:"io-status,omitempty"`
	// Inserted is the top node of the medium, nil when there is none.
	Inserted *BlockDeviceInfo `json:"inserted,omitempty"`
}

// BlockJobInfo describes a block job (QAPI BlockJobInfo).
type BlockJobInfo struct {
	Type string `json:"type"`
	// Device is the job's id (the job-id given when starting it).
	Device string `json:"device"`
	Len    int64  `json:"len"`
	// Offset is the progress; for a sync=none backup, the bytes copied
	// before guest writes so far.
	Offset       int64  `json:"offset"`
	Busy         bool   `json:"busy"`
	Paused       bool   `json:"paused"`
	Speed        int64  `json:"speed"`
	IOStatus     string `json:"io-status"`
	Ready        bool   `json:"ready"`
	Status       string `json:"status"`
	AutoFinalize bool   `json:"auto-finalize"`
	AutoDismiss  bool   `json:"auto-dismiss"`
	Error        string `json:"error,omitempty"`
}

// QueryNamedBlockNodes lists every block node, without nesting backing
// chains ("flat": true).
func (c *Client) QueryNamedBlockNodes(ctx context.Context) ([]BlockDeviceInfo, error) {
	var nodes []BlockDeviceInfo
	err := c.Execute(ctx, "query-named-block-nodes", map[string]bool{"flat": true}, &nodes)
	return nodes, err
}

// QueryBlock lists the block backends (guest disks and drives).
func (c *Client) QueryBlock(ctx context.Context) ([]BlockInfo, error) {
	var devs []BlockInfo
	err := c.Execute(ctx, "query-block", nil, &devs)
	return devs, err
}

// QueryBlockJobs lists the running block jobs.
func (c *Client) QueryBlockJobs(ctx context.Context) ([]BlockJobInfo, error) {
	var jobs []BlockJobInfo
	err := c.Execute(ctx, "query-block-jobs", nil, &jobs)
	return jobs, err
}

// BlockdevAdd adds a block node. options is QAPI BlockdevOptions, e.g.
//
//	map[string]any{"driver": "qcow2", "node-name": "fleece0",
//		"file": "fleece-file0", "backing": "disk0"}
func (c *Client) BlockdevAdd(ctx context.Context, options any) error {
	return c.Execute(ctx, "blockdev-add", options, nil)
}

// BlockdevDel removes a block node that nothing uses any more: delete the
// export and cancel the job using it first, and delete a format node
// before its file node.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", map[string]string{"node-name": nodeName}, nil)
}

// BlockJobCancel asks a block job to stop; the job ends later, with the
// event BLOCK_JOB_CANCELLED (or BLOCK_JOB_COMPLETED when it was finishing
// anyway). A sync=none backup never ends otherwise: cancelling is its
// normal end. force also cancels a paused job without resuming it.
func (c *Client) BlockJobCancel(ctx context.Context, jobID string, force bool) error {
	args := struct {
		Device string `json:"device"`
		Force  bool   `json:"force,omitempty"`
	}{jobID, force}
	return c.Execute(ctx, "block-job-cancel", args, nil)
}

// BlockJobCancelWait cancels a block job and waits until it has ended,
// returning the BLOCK_JOB_CANCELLED or BLOCK_JOB_COMPLETED event.
func (c *Client) BlockJobCancelWait(ctx context.Context, jobID string, force bool) (Event, error) {
	isDevice := MatchData("device", jobID)
	w := c.Subscribe("", func(e Event) bool {
		return (e.Name == "BLOCK_JOB_CANCELLED" || e.Name == "BLOCK_JOB_COMPLETED") && isDevice(e)
	})
	defer w.Close()
	if err := c.BlockJobCancel(ctx, jobID, force); err != nil {
		return Event{}, err
	}
	return w.Wait(ctx)
}

// BitmapRemove removes a dirty bitmap, from the qcow2 file too when it is
// persistent. It also removes an inconsistent bitmap, the only thing that
// can be done with one.
func (c *Client) BitmapRemove(ctx context.Context, node, name string) error {
	return c.Execute(ctx, "block-dirty-bitmap-remove", bitmapRef{Node: node, Name: name}, nil)
}
