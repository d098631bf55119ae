package qmp

import "context"

// Backup sync modes for BlockdevBackupAction.
const (
	// SyncNone copies only what the guest is about to overwrite: the
	// fleecing mode, whose target then shows the disk as it was when the
	// job started. The job runs until cancelled.
	SyncNone = "none"
	// SyncFull copies the whole disk.
	SyncFull = "full"
)

// Action is one action of a transaction (QAPI TransactionAction).
type Action struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// Transaction runs actions atomically: either all take effect or none
// does, and their jobs start at the same instant. That instant is the
// crash-consistent point of a multi-disk snapshot.
//
// QEMU 7.2 rejects the "completion-mode": "grouped" property when bitmap
// actions are present, so none is sent; jobs then complete individually.
func (c *Client) Transaction(ctx context.Context, actions []Action) error {
	args := struct {
		Actions []Action `json:"actions"`
	}{actions}
	if args.Actions == nil {
		args.Actions = []Action{}
	}
	return c.Execute(ctx, "transaction", args, nil)
}

// blockdevBackup is the data of a blockdev-backup action.
type blockdevBackup struct {
	JobID  string `json:"job-id,omitempty"`
	Device string `json:"device"`
	Target string `json:"target"`
	Sync   string `json:"sync"`
}

// BlockdevBackupAction starts a backup job from node device to node target.
// With sync SyncNone and a target whose backing is device, the target is a
// fleecing view: reads show the point in time of the transaction. jobID ""
// lets QEMU name the job after device.
func BlockdevBackupAction(device, target, sync, jobID string) Action {
	return Action{Type: "blockdev-backup", Data: blockdevBackup{JobID: jobID, Device: device, Target: target, Sync: sync}}
}

// bitmapAdd is the data of block-dirty-bitmap-add.
type bitmapAdd struct {
	Node        string `json:"node"`
	Name        string `json:"name"`
	Granularity uint32 `json:"granularity,omitempty"`
	Persistent  bool   `json:"persistent,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
}

// BitmapAddAction adds a dirty bitmap to a format node. persistent keeps
// it in the qcow2 file across QEMU restarts (qcow2 only; raw nodes refuse).
// granularity 0 means QEMU's default, the cluster size. disabled creates it
// not recording, e.g. as a target for merging into.
func BitmapAddAction(node, name string, persistent bool, granularity uint32, disabled bool) Action {
	return Action{Type: "block-dirty-bitmap-add", Data: bitmapAdd{
		Node: node, Name: name, Granularity: granularity, Persistent: persistent, Disabled: disabled,
	}}
}

// bitmapRef names a bitmap: the data of remove, enable, disable and clear.
type bitmapRef struct {
	Node string `json:"node"`
	Name string `json:"name"`
}

// BitmapRemoveAction removes a bitmap.
func BitmapRemoveAction(node, name string) Action {
	return Action{Type: "block-dirty-bitmap-remove", Data: bitmapRef{Node: node, Name: name}}
}

// BitmapDisableAction stops a bitmap recording writes, freezing it; only a
// disabled bitmap can be exported read-only over NBD.
func BitmapDisableAction(node, name string) Action {
	return Action{Type: "block-dirty-bitmap-disable", Data: bitmapRef{Node: node, Name: name}}
}

// BitmapEnableAction makes a bitmap record writes again.
func BitmapEnableAction(node, name string) Action {
	return Action{Type: "block-dirty-bitmap-enable", Data: bitmapRef{Node: node, Name: name}}
}

// BitmapClearAction marks every bit of a bitmap clean.
func BitmapClearAction(node, name string) Action {
	return Action{Type: "block-dirty-bitmap-clear", Data: bitmapRef{Node: node, Name: name}}
}

// bitmapMerge is the data of block-dirty-bitmap-merge.
type bitmapMerge struct {
	Node    string   `json:"node"`
	Target  string   `json:"target"`
	Bitmaps []string `json:"bitmaps"`
}

// BitmapMergeAction ORs the bitmaps sources into target, all on node. After
// a failed backup, merging the old bitmap into the new one (then removing
// the old) keeps every change for the next try.
func BitmapMergeAction(node, target string, sources []string) Action {
	if sources == nil {
		sources = []string{}
	}
	return Action{Type: "block-dirty-bitmap-merge", Data: bitmapMerge{Node: node, Target: target, Bitmaps: sources}}
}
