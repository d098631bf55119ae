package qmp

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("bad JSON %s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("bad JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// TestHelpersWireFormat checks that each typed helper sends exactly the
// command and arguments that QEMU 7.2 was seen to accept, and decodes a
// reply recorded from it.
func TestHelpersWireFormat(t *testing.T) {
	f, c := dialFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var (
		nodes   []BlockDeviceInfo
		devs    []BlockInfo
		jobs    []BlockJobInfo
		status  StatusInfo
		cpus    []CPUInfoFast
		mem     MemorySizeSummary
		version VersionInfo
		pci     []PCIInfo
		exports []BlockExportInfo
		hmp     string
	)
	cases := []struct {
		name    string
		call    func() error
		command string
		args    string // "" = none
		ret     string
		check   func() bool
	}{
		{
			name:    "QueryNamedBlockNodes",
			call:    func() (err error) { nodes, err = c.QueryNamedBlockNodes(ctx); return err },
			command: "query-named-block-nodes", args: `{"flat":true}`,
			ret: `[{"iops_rd": 0, "detect_zeroes": "off", "image": {"virtual-size": 67108864, "filename": "/vm/disk0.qcow2", "cluster-size": 65536, "format": "qcow2", "actual-size": 200704, "dirty-flag": false},
				"ro": false, "node-name": "disk0", "backing_file_depth": 0, "drv": "qcow2", "file": "/vm/disk0.qcow2",
				"dirty-bitmaps": [{"name": "b1", "recording": true, "persistent": true, "busy": false, "granularity": 65536, "count": 1048576},
					{"name": "bm", "recording": false, "persistent": true, "busy": false, "granularity": 65536, "count": 0, "inconsistent": true}]}]`,
			check: func() bool {
				n := nodes[0]
				return len(nodes) == 1 && n.NodeName == "disk0" && n.Driver == "qcow2" && n.Image.VirtualSize == 64<<20 &&
					n.Image.Filename == "/vm/disk0.qcow2" && len(n.DirtyBitmaps) == 2 &&
					n.DirtyBitmaps[0] == BlockDirtyInfo{Name: "b1", Recording: true, Persistent: true, Granularity: 65536, Count: 1 << 20} &&
					n.DirtyBitmaps[1].Inconsistent
			},
		},
		{
			name:    "QueryBlock",
			call:    func() (err error) { devs, err = c.QueryBlock(ctx); return err },
			command: "query-block",
			ret:     `[{"io-status": "ok", "device": "", "locked": false, "removable": false, "inserted": {"node-name": "disk0", "drv": "qcow2", "image": {"virtual-size": 67108864}}, "qdev": "/machine/peripheral/vdisk0/virtio-backend", "type": "unknown"}]`,
			check: func() bool {
				return len(devs) == 1 && devs[0].QDev == "/machine/peripheral/vdisk0/virtio-backend" && devs[0].Inserted != nil && devs[0].Inserted.NodeName == "disk0"
			},
		},
		{
			name:    "QueryBlockJobs",
			call:    func() (err error) { jobs, err = c.QueryBlockJobs(ctx); return err },
			command: "query-block-jobs",
			ret:     `[{"auto-finalize": true, "io-status": "ok", "device": "fleece-job0", "auto-dismiss": true, "busy": false, "len": 67108864, "offset": 1048576, "status": "running", "paused": false, "speed": 0, "ready": false, "type": "backup"}]`,
			check: func() bool {
				return len(jobs) == 1 && jobs[0].Device == "fleece-job0" && jobs[0].Status == "running" && jobs[0].Offset == 1<<20 && jobs[0].Type == "backup"
			},
		},
		{
			name:    "QueryStatus",
			call:    func() (err error) { status, err = c.QueryStatus(ctx); return err },
			command: "query-status",
			ret:     `{"status": "prelaunch", "singlestep": false, "running": false}`,
			check:   func() bool { return status == StatusInfo{Running: false, Status: "prelaunch"} },
		},
		{
			name:    "QueryCPUsFast",
			call:    func() (err error) { cpus, err = c.QueryCPUsFast(ctx); return err },
			command: "query-cpus-fast",
			ret:     `[{"thread-id": 21326, "props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"}]`,
			check: func() bool {
				return len(cpus) == 1 && cpus[0].ThreadID == 21326 && cpus[0].Target == "x86_64" && len(cpus[0].Props) == 3
			},
		},
		{
			name:    "QueryMemorySizeSummary",
			call:    func() (err error) { mem, err = c.QueryMemorySizeSummary(ctx); return err },
			command: "query-memory-size-summary",
			ret:     `{"base-memory": 67108864, "plugged-memory": 0}`,
			check:   func() bool { return mem.BaseMemory == 64<<20 },
		},
		{
			name:    "QueryVersion",
			call:    func() (err error) { version, err = c.QueryVersion(ctx); return err },
			command: "query-version",
			ret:     `{"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}`,
			check: func() bool {
				return version.QEMU == VersionTriple{7, 2, 22} && version.Package == "Debian 1:7.2+dfsg-7"
			},
		},
		{
			name:    "QueryPCI",
			call:    func() (err error) { pci, err = c.QueryPCI(ctx); return err },
			command: "query-pci",
			ret:     `[{"bus": 0, "devices": [{"bus": 0, "slot": 4, "function": 0, "class_info": {"class": 256, "desc": "SCSI controller"}, "id": {"device": 4097, "vendor": 6900, "subsystem": 2, "subsystem-vendor": 6900}, "irq": 11, "irq_pin": 1, "qdev_id": "vdisk0", "regions": []}]}]`,
			check: func() bool {
				return len(pci) == 1 && len(pci[0].Devices) == 1 && pci[0].Devices[0].QDevID == "vdisk0" && pci[0].Devices[0].ID.Vendor == 6900
			},
		},
		{name: "Stop", call: func() error { return c.Stop(ctx) }, command: "stop", ret: `{}`},
		{name: "Cont", call: func() error { return c.Cont(ctx) }, command: "cont", ret: `{}`},
		{name: "Quit", call: func() error { return c.Quit(ctx) }, command: "quit", ret: `{}`},
		{
			name: "BlockdevAdd",
			call: func() error {
				return c.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "node-name": "fleece0", "file": "fleece-file0", "backing": "disk0"})
			},
			command: "blockdev-add", args: `{"driver":"qcow2","node-name":"fleece0","file":"fleece-file0","backing":"disk0"}`, ret: `{}`,
		},
		{
			name: "BlockdevDel", call: func() error { return c.BlockdevDel(ctx, "fleece0") },
			command: "blockdev-del", args: `{"node-name":"fleece0"}`, ret: `{}`,
		},
		{
			name: "Transaction",
			call: func() error {
				return c.Transaction(ctx, []Action{
					BlockdevBackupAction("disk0", "fleece0", SyncNone, "fleece-job0"),
					BitmapAddAction("disk0", "b1", true, 0, false),
					BitmapDisableAction("disk0", "b0"),
					BitmapAddAction("disk0", "peek", false, 65536, true),
					BitmapMergeAction("disk0", "peek", []string{"b1"}),
					BitmapEnableAction("disk0", "peek"),
					BitmapClearAction("disk0", "peek"),
					BitmapRemoveAction("disk0", "peek"),
					BlockdevBackupAction("disk1", "fleece1", SyncFull, ""),
				})
			},
			command: "transaction",
			args: `{"actions":[
				{"type":"blockdev-backup","data":{"device":"disk0","target":"fleece0","sync":"none","job-id":"fleece-job0"}},
				{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"b1","persistent":true}},
				{"type":"block-dirty-bitmap-disable","data":{"node":"disk0","name":"b0"}},
				{"type":"block-dirty-bitmap-add","data":{"node":"disk0","name":"peek","granularity":65536,"disabled":true}},
				{"type":"block-dirty-bitmap-merge","data":{"node":"disk0","target":"peek","bitmaps":["b1"]}},
				{"type":"block-dirty-bitmap-enable","data":{"node":"disk0","name":"peek"}},
				{"type":"block-dirty-bitmap-clear","data":{"node":"disk0","name":"peek"}},
				{"type":"block-dirty-bitmap-remove","data":{"node":"disk0","name":"peek"}},
				{"type":"blockdev-backup","data":{"device":"disk1","target":"fleece1","sync":"full"}}]}`,
			ret: `{}`,
		},
		{
			name: "empty Transaction", call: func() error { return c.Transaction(ctx, nil) },
			command: "transaction", args: `{"actions":[]}`, ret: `{}`,
		},
		{
			name: "NBDServerStart", call: func() error { return c.NBDServerStart(ctx, "/vm/nbd.sock") },
			command: "nbd-server-start", args: `{"addr":{"type":"unix","data":{"path":"/vm/nbd.sock"}}}`, ret: `{}`,
		},
		{name: "NBDServerStop", call: func() error { return c.NBDServerStop(ctx) }, command: "nbd-server-stop", ret: `{}`},
		{
			name: "BlockExportAdd", call: func() error { return c.BlockExportAdd(ctx, "exp0", "fleece0", false, []string{"b0"}) },
			command: "block-export-add", args: `{"type":"nbd","id":"exp0","node-name":"fleece0","writable":false,"bitmaps":["b0"]}`, ret: `{}`,
		},
		{
			name: "BlockExportAdd without bitmaps", call: func() error { return c.BlockExportAdd(ctx, "exp1", "fleece1", true, nil) },
			command: "block-export-add", args: `{"type":"nbd","id":"exp1","node-name":"fleece1","writable":true}`, ret: `{}`,
		},
		{
			name: "BlockExportDel", call: func() error { return c.BlockExportDel(ctx, "exp0") },
			command: "block-export-del", args: `{"id":"exp0"}`, ret: `{}`,
		},
		{
			name:    "QueryBlockExports",
			call:    func() (err error) { exports, err = c.QueryBlockExports(ctx); return err },
			command: "query-block-exports",
			ret:     `[{"type": "nbd", "id": "exp0", "shutting-down": false, "node-name": "fleece0"}]`,
			check: func() bool {
				return len(exports) == 1 && exports[0] == BlockExportInfo{ID: "exp0", Type: "nbd", NodeName: "fleece0"}
			},
		},
		{
			name: "BlockJobCancel", call: func() error { return c.BlockJobCancel(ctx, "fleece-job0", false) },
			command: "block-job-cancel", args: `{"device":"fleece-job0"}`, ret: `{}`,
		},
		{
			name: "BlockJobCancel force", call: func() error { return c.BlockJobCancel(ctx, "fleece-job0", true) },
			command: "block-job-cancel", args: `{"device":"fleece-job0","force":true}`, ret: `{}`,
		},
		{
			name: "BitmapRemove", call: func() error { return c.BitmapRemove(ctx, "disk0", "b0") },
			command: "block-dirty-bitmap-remove", args: `{"node":"disk0","name":"b0"}`, ret: `{}`,
		},
		{
			name:    "HumanMonitorCommand",
			call:    func() (err error) { hmp, err = c.HumanMonitorCommand(ctx, "info block"); return err },
			command: "human-monitor-command", args: `{"command-line":"info block"}`,
			ret:   `"disk0: /vm/disk0.qcow2 (qcow2)\r\n"`,
			check: func() bool { return hmp == "disk0: /vm/disk0.qcow2 (qcow2)\r\n" },
		},
	}
	for _, tc := range cases {
		done := make(chan error, 1)
		go func() { done <- tc.call() }()
		r := f.next()
		if r.Execute != tc.command {
			t.Errorf("%s: sent %s, want %s", tc.name, r.Execute, tc.command)
		}
		switch {
		case tc.args == "" && r.HasArguments:
			t.Errorf("%s: sent arguments %s, want none", tc.name, r.Arguments)
		case tc.args != "" && !sameJSON(t, string(r.Arguments), tc.args):
			t.Errorf("%s: sent arguments\n%s\nwant\n%s", tc.name, r.Arguments, tc.args)
		}
		f.reply(r, tc.ret)
		if err := within(t, done, 5*time.Second, tc.name); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.check != nil && !tc.check() {
			t.Errorf("%s: reply %s decoded wrongly", tc.name, tc.ret)
		}
	}
}

// TestWaitHelpers checks that BlockExportDelWait and BlockJobCancelWait
// catch their event even when QEMU sends it before the reply.
func TestWaitHelpers(t *testing.T) {
	f, c := dialFake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	done := make(chan error, 1)
	go func() { done <- c.BlockExportDelWait(ctx, "exp0") }()
	r := f.next()
	f.event("BLOCK_EXPORT_DELETED", `{"id": "exp1"}`)
	f.event("BLOCK_EXPORT_DELETED", `{"id": "exp0"}`)
	f.reply(r, `{}`)
	if err := within(t, done, 5*time.Second, "BlockExportDelWait"); err != nil {
		t.Error(err)
	}

	type result struct {
		e   Event
		err error
	}
	got := make(chan result, 1)
	go func() {
		e, err := c.BlockJobCancelWait(ctx, "fleece-job0", false)
		got <- result{e, err}
	}()
	r = f.next()
	f.reply(r, `{}`)
	f.event("JOB_STATUS_CHANGE", `{"id": "fleece-job0", "status": "aborting"}`)
	f.event("BLOCK_JOB_CANCELLED", `{"device": "fleece-job0", "type": "backup", "len": 67108864, "offset": 65536, "speed": 0}`)
	if res := within(t, got, 5*time.Second, "BlockJobCancelWait"); res.err != nil || res.e.Name != "BLOCK_JOB_CANCELLED" {
		t.Errorf("BlockJobCancelWait = %s, %v", res.e.Name, res.err)
	}

	go func() {
		_, err := c.BlockJobCancelWait(ctx, "gone", false)
		got <- result{err: err}
	}()
	f.replyError(f.next(), "DeviceNotActive", "Block job 'gone' not found")
	if res := within(t, got, 5*time.Second, "BlockJobCancelWait of a missing job"); res.err == nil {
		t.Error("BlockJobCancelWait of a missing job succeeded")
	}
}
