package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/syncbuf"
)

// qemuVM is a QEMU process started for one test.
type qemuVM struct {
	cmd     *exec.Cmd
	qmpPath string
	out     *syncbuf.Buffer
	exited  chan struct{} // closed when the process has been waited for
	waitErr error
}

// requireTool returns the path of a program the integration test needs. A
// missing one fails the test: a silently skipped QEMU test looks green and
// proves nothing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH (%v): run `make test`, which installs QEMU (qemu-system-x86, qemu-utils)", name, err)
	}
	return path
}

// optPath escapes a path for a QEMU option value, where "," separates
// options and ",," stands for a comma.
func optPath(p string) string {
	return strings.ReplaceAll(p, ",", ",,")
}

// run runs a program and fails the test with its output when it fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// startQEMU starts a paused, diskless-boot x86 VM under TCG with the given
// extra options and a QMP socket in dir, and kills it when the test ends.
func startQEMU(t *testing.T, dir string, extra ...string) *qemuVM {
	t.Helper()
	bin := requireTool(t, "qemu-system-x86_64")
	vm := &qemuVM{qmpPath: filepath.Join(dir, "qmp.sock"), out: &syncbuf.Buffer{}, exited: make(chan struct{})}
	args := append([]string{
		"-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none", "-m", "64", "-S",
		"-qmp", "unix:" + optPath(vm.qmpPath) + ",server=on,wait=off",
	}, extra...)
	vm.cmd = exec.Command(bin, args...)
	vm.cmd.Stdout = vm.out
	vm.cmd.Stderr = vm.out
	setChildAttrs(vm.cmd)
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()
	t.Cleanup(func() {
		killChild(vm.cmd)
		select {
		case <-vm.exited:
		case <-time.After(5 * time.Second):
			t.Errorf("QEMU (pid %d) did not exit after SIGKILL", vm.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("QEMU output:\n%s", vm.out)
		}
	})
	return vm
}

// dial connects to the VM's QMP socket, retrying while QEMU creates it.
func (vm *qemuVM) dial(ctx context.Context, t *testing.T) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		c, err := Dial(ctx, vm.qmpPath)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal(err)
		}
		select {
		case <-vm.exited:
			t.Fatalf("QEMU exited before its QMP socket answered: %v\n%s", vm.waitErr, vm.out)
		case <-ctx.Done():
			t.Fatalf("QMP socket not ready within 10s: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// findNode returns the named node of a query-named-block-nodes reply.
func findNode(t *testing.T, nodes []BlockDeviceInfo, name string) BlockDeviceInfo {
	t.Helper()
	for _, n := range nodes {
		if n.NodeName == name {
			return n
		}
	}
	t.Fatalf("no node %q among %d nodes", name, len(nodes))
	return BlockDeviceInfo{}
}

// bitmaps returns a node's bitmaps by name.
func bitmaps(ctx context.Context, t *testing.T, c *Client, node string) map[string]BlockDirtyInfo {
	t.Helper()
	nodes, err := c.QueryNamedBlockNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]BlockDirtyInfo)
	for _, b := range findNode(t, nodes, node).DirtyBitmaps {
		m[b.Name] = b
	}
	return m
}

// TestQEMU runs drctl's snapshot sequence (QEMU.md §10: fleecing backup,
// bitmap rotation, NBD export, teardown) against a real QEMU through the
// client.
func TestQEMU(t *testing.T) {
	qemuImg := requireTool(t, "qemu-img")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := shortTempDir(t)
	disk := filepath.Join(dir, "disk0.qcow2")
	run(t, qemuImg, "create", "-q", "-f", "qcow2", disk, "64M")
	vm := startQEMU(t, dir,
		"-blockdev", "driver=file,filename="+optPath(disk)+",node-name=file0",
		"-blockdev", "driver=qcow2,file=file0,node-name=disk0",
		"-device", "virtio-blk-pci,drive=disk0,id=vdisk0")
	c := vm.dial(ctx, t)
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// The VM as drctl discovers it.
	v, err := c.QueryVersion(ctx)
	must(err, "query version")
	if ma, mi, mc := c.Version(); v.QEMU != (VersionTriple{ma, mi, mc}) || ma < 7 {
		t.Errorf("greeting version %d.%d.%d, query-version %+v", ma, mi, mc, v.QEMU)
	}
	st, err := c.QueryStatus(ctx)
	must(err, "query status")
	if st.Running || st.Status != "prelaunch" {
		t.Errorf("status = %+v, want prelaunch (-S)", st)
	}
	cpus, err := c.QueryCPUsFast(ctx)
	must(err, "query CPUs")
	mem, err := c.QueryMemorySizeSummary(ctx)
	must(err, "query memory")
	if len(cpus) != 1 || mem.BaseMemory != 64<<20 {
		t.Errorf("%d CPUs and %d bytes of memory, want 1 and 64 MiB", len(cpus), mem.BaseMemory)
	}
	pci, err := c.QueryPCI(ctx)
	must(err, "query PCI")
	if !slices.ContainsFunc(pci[0].Devices, func(d PCIDeviceInfo) bool { return d.QDevID == "vdisk0" }) {
		t.Errorf("query-pci does not list vdisk0: %+v", pci)
	}
	devs, err := c.QueryBlock(ctx)
	must(err, "query block")
	if len(devs) != 1 || devs[0].Inserted == nil || devs[0].Inserted.NodeName != "disk0" || !strings.Contains(devs[0].QDev, "vdisk0") {
		t.Errorf("query-block = %+v, want vdisk0 with node disk0", devs)
	}
	nodes, err := c.QueryNamedBlockNodes(ctx)
	must(err, "query nodes")
	disk0 := findNode(t, nodes, "disk0")
	if disk0.Driver != "qcow2" || disk0.Image.VirtualSize != 64<<20 || disk0.Image.Filename != disk {
		t.Errorf("disk0 = %+v", disk0)
	}

	// T0: the baseline bitmap. Adding it twice fails the transaction.
	must(c.Transaction(ctx, []Action{BitmapAddAction("disk0", "b0", true, 0, false)}), "add bitmap b0")
	err = c.Transaction(ctx, []Action{BitmapAddAction("disk0", "b0", true, 0, false)})
	var qe *Error
	if !errors.As(err, &qe) || err.Error() != "QMP transaction: GenericError: Bitmap already exists: b0" {
		t.Errorf("second add of b0: %v", err)
	}

	// T1: the fleecing target (backing = the live node) and one
	// transaction that starts the backup and rotates the bitmaps.
	fleece := filepath.Join(dir, "fleece0.qcow2")
	run(t, qemuImg, "create", "-q", "-f", "qcow2", fleece, fmt.Sprint(disk0.Image.VirtualSize))
	must(c.BlockdevAdd(ctx, map[string]any{"driver": "file", "filename": fleece, "node-name": "fleece-file0"}), "add fleece file node")
	must(c.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "node-name": "fleece0", "file": "fleece-file0", "backing": "disk0"}), "add fleece node")
	must(c.Transaction(ctx, []Action{
		BlockdevBackupAction("disk0", "fleece0", SyncNone, "fleece-job0"),
		BitmapAddAction("disk0", "b1", true, 0, false),
		BitmapDisableAction("disk0", "b0"),
	}), "snapshot transaction")
	jobs, err := c.QueryBlockJobs(ctx)
	must(err, "query jobs")
	if len(jobs) != 1 || jobs[0].Device != "fleece-job0" || jobs[0].Type != "backup" || jobs[0].Status != "running" {
		t.Errorf("jobs = %+v, want the running backup fleece-job0", jobs)
	}

	// A guest write after T1 (through the device, so through the
	// copy-before-write filter) lands in b1 only, and the job copies the
	// old data to the fleece first.
	out, err := c.HumanMonitorCommand(ctx, `qemu-io -d /machine/peripheral/vdisk0/virtio-backend "write -P 0xab 0 64k"`)
	must(err, "write through HMP qemu-io")
	if strings.Contains(out, "Error") {
		t.Fatalf("HMP qemu-io: %s", out)
	}
	bms := bitmaps(ctx, t, c, "disk0")
	if b0, b1 := bms["b0"], bms["b1"]; b0.Recording || b0.Count != 0 || !b1.Recording || b1.Count != 65536 || !b1.Persistent || b1.Granularity != 65536 {
		t.Errorf("bitmaps after the write: %+v", bms)
	}
	jobs, err = c.QueryBlockJobs(ctx)
	must(err, "query jobs")
	if len(jobs) != 1 || jobs[0].Offset != 65536 {
		t.Errorf("jobs = %+v, want 64 KiB copied before write", jobs)
	}
	out, err = c.HumanMonitorCommand(ctx, "no-such-command")
	if err != nil || !strings.Contains(out, "unknown command") {
		t.Errorf("unknown HMP command = %q, %v; want the error as text", out, err)
	}

	// Export the frozen view with the frozen bitmap.
	nbdSock := filepath.Join(dir, "nbd.sock")
	must(c.NBDServerStart(ctx, nbdSock), "start NBD server")
	if err := c.NBDServerStart(ctx, nbdSock); !errors.As(err, &qe) {
		t.Errorf("second NBD server start: %v, want a QMP error", err)
	}
	if err := c.BlockExportAdd(ctx, "bad", "fleece0", false, []string{"b1"}); !errors.As(err, &qe) || !strings.Contains(qe.Desc, "b1") {
		t.Errorf("read-only export of the enabled bitmap b1: %v, want a QMP error", err)
	}
	must(c.BlockExportAdd(ctx, "exp0", "fleece0", false, []string{"b0"}), "export fleece0")
	exps, err := c.QueryBlockExports(ctx)
	must(err, "query exports")
	if len(exps) != 1 || exps[0].ID != "exp0" || exps[0].NodeName != "fleece0" {
		t.Errorf("exports = %+v", exps)
	}
	checkNBDGreeting(ctx, t, nbdSock)

	// Teardown, in the order QEMU needs.
	deleted := c.Subscribe("BLOCK_EXPORT_DELETED", MatchData("id", "exp0"))
	defer deleted.Close()
	must(c.BlockExportDel(ctx, "exp0"), "delete export")
	_, err = deleted.Wait(ctx)
	must(err, "wait for BLOCK_EXPORT_DELETED")
	must(c.NBDServerStop(ctx), "stop NBD server")
	cancelled := c.Subscribe("BLOCK_JOB_CANCELLED", MatchData("device", "fleece-job0"))
	defer cancelled.Close()
	must(c.BlockJobCancel(ctx, "fleece-job0", false), "cancel job")
	ev, err := cancelled.Wait(ctx)
	must(err, "wait for BLOCK_JOB_CANCELLED")
	var jobEnd struct {
		Offset int64 `json:"offset"`
	}
	if err := ev.DecodeData(&jobEnd); err != nil || jobEnd.Offset != 65536 || ev.Timestamp.IsZero() {
		t.Errorf("BLOCK_JOB_CANCELLED = %s at %v", ev.Data, ev.Timestamp)
	}
	must(c.BlockdevDel(ctx, "fleece0"), "delete fleece node")
	must(c.BlockdevDel(ctx, "fleece-file0"), "delete fleece file node")
	must(c.BitmapRemove(ctx, "disk0", "b0"), "remove b0")
	if bms := bitmaps(ctx, t, c, "disk0"); len(bms) != 1 || !bms["b1"].Recording {
		t.Errorf("bitmaps after teardown: %+v, want b1 only", bms)
	}

	// The wait helpers on a second, shorter round (no bitmaps).
	must(c.BlockdevAdd(ctx, map[string]any{"driver": "file", "filename": fleece, "node-name": "fleece-file0"}), "add fleece file node again")
	must(c.BlockdevAdd(ctx, map[string]any{"driver": "qcow2", "node-name": "fleece0", "file": "fleece-file0", "backing": "disk0"}), "add fleece node again")
	must(c.Transaction(ctx, []Action{BlockdevBackupAction("disk0", "fleece0", SyncNone, "fleece-job1")}), "second snapshot")
	must(c.NBDServerStart(ctx, nbdSock), "restart NBD server")
	must(c.BlockExportAdd(ctx, "exp1", "fleece0", false, nil), "export again")
	must(c.BlockExportDelWait(ctx, "exp1"), "BlockExportDelWait")
	must(c.NBDServerStop(ctx), "stop NBD server again")
	ev, err = c.BlockJobCancelWait(ctx, "fleece-job1", false)
	must(err, "BlockJobCancelWait")
	if ev.Name != "BLOCK_JOB_CANCELLED" {
		t.Errorf("job ended with %s, want BLOCK_JOB_CANCELLED", ev.Name)
	}
	must(c.BlockdevDel(ctx, "fleece0"), "delete fleece node again")
	must(c.BlockdevDel(ctx, "fleece-file0"), "delete fleece file node again")

	// Run state changes and their events.
	resumed := c.Subscribe("RESUME", nil)
	defer resumed.Close()
	must(c.Cont(ctx), "cont")
	_, err = resumed.Wait(ctx)
	must(err, "wait for RESUME")
	stopped := c.Subscribe("STOP", nil)
	defer stopped.Close()
	must(c.Stop(ctx), "stop")
	_, err = stopped.Wait(ctx)
	must(err, "wait for STOP")
	if st, err := c.QueryStatus(ctx); err != nil || st.Running || st.Status != "paused" {
		t.Errorf("status after stop = %+v, %v", st, err)
	}

	// A clean quit stores the persistent bitmap b1 in the image, and the
	// client then reports the lost connection.
	shutdown := c.Subscribe("SHUTDOWN", nil)
	defer shutdown.Close()
	must(c.Quit(ctx), "quit")
	_, err = shutdown.Wait(ctx)
	must(err, "wait for SHUTDOWN")
	select {
	case <-vm.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("QEMU did not exit within 10s of quit")
	}
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("command after quit: %v, want ErrClosed", err)
	}
	var info struct {
		FormatSpecific struct {
			Data struct {
				Bitmaps []struct {
					Name string `json:"name"`
				} `json:"bitmaps"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	must(json.Unmarshal(run(t, qemuImg, "info", "--output=json", disk), &info), "decode qemu-img info")
	if b := info.FormatSpecific.Data.Bitmaps; len(b) != 1 || b[0].Name != "b1" {
		t.Errorf("bitmaps stored in the image: %+v, want b1", b)
	}
}

// checkNBDGreeting connects to the NBD server and reads the start of its
// handshake, proving that nbd-server-start listens where it was told to.
func checkNBDGreeting(ctx context.Context, t *testing.T, sock string) {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		t.Fatalf("connect to the NBD server: %v", err)
	}
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	magic := make([]byte, 8)
	if _, err := io.ReadFull(conn, magic); err != nil || string(magic) != "NBDMAGIC" {
		t.Errorf("NBD server greeting %q, %v; want NBDMAGIC", magic, err)
	}
}
