package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/qga/qgatest"
	"github.com/drctl/drctl/internal/qmp"
	"github.com/drctl/drctl/recovery"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// liveVM is a paused QEMU (no guest needed: the test writes through the
// disks' device backends, exactly where a guest's writes go) with two
// qcow2 disks, a QMP socket for drctl and one for the test.
type liveVM struct {
	kill      func()
	drctlSock string
	test      *qmp.Client
	models    [][]byte // what each disk holds, as the test wrote it
}

const liveDiskSize = 16 << 20

func startLiveVM(t *testing.T) *liveVM {
	t.Helper()
	return startLiveVMIn(t, t.TempDir(), nil)
}

// startLiveVMIn starts the VM with its images in dir: new ones, or the
// existing ones of an earlier VM (then models carries over its content).
func startLiveVMIn(t *testing.T, dir string, models [][]byte) *liveVM {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `make test`, which installs qemu-system-x86 and qemu-utils", tool)
		}
	}
	vm := &liveVM{drctlSock: filepath.Join(dir, "drctl.sock"), models: models}
	os.Remove(vm.drctlSock)
	os.Remove(filepath.Join(dir, "test.sock"))
	args := []string{"-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none", "-m", "64", "-S",
		"-qmp", "unix:" + vm.drctlSock + ",server=on,wait=off",
		"-qmp", "unix:" + filepath.Join(dir, "test.sock") + ",server=on,wait=off",
		"-netdev", "user,id=lan", "-device", "virtio-net-pci,netdev=lan,id=nic0,mac=52:54:00:aa:00:01",
		"-netdev", "user,id=mgmt", "-device", "e1000,netdev=mgmt,mac=52:54:00:aa:00:02"}
	for i := range 2 {
		img := filepath.Join(dir, fmt.Sprintf("disk%d.qcow2", i))
		if models == nil {
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, fmt.Sprint(liveDiskSize)).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img create: %v: %s", err, out)
			}
			vm.models = append(vm.models, make([]byte, liveDiskSize))
		}
		args = append(args,
			"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=file%d", img, i),
			"-blockdev", fmt.Sprintf("driver=qcow2,file=file%d,node-name=disk%d", i, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,id=vdisk%d,serial=sn-%d", i, i, i))
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	vm.kill = func() { cmd.Process.Kill(); cmd.Wait() }
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("QEMU output:\n%s", out.String())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for {
		c, err := qmp.Dial(ctx, filepath.Join(dir, "test.sock"))
		if err == nil {
			vm.test = c
			t.Cleanup(func() { c.Close() })
			return vm
		}
		if ctx.Err() != nil {
			t.Fatalf("QEMU's QMP socket did not answer: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write writes a 4 KiB-multiple pattern through disk i's device, as a
// guest would, and records it in the model.
func (vm *liveVM) write(t *testing.T, disk int, off, n int64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(off)))
	// qemu-io fills with one byte value per write; vary it per 4 KiB so
	// that misplaced blocks are caught.
	for o := off; o < off+n; o += 4096 {
		v := byte(rng.UintN(255) + 1)
		cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/vdisk%d/virtio-backend "write -P %d %d 4096"`, disk, v, o)
		if out, err := vm.test.HumanMonitorCommand(t.Context(), cmd); err != nil || strings.Contains(out, "rror") {
			t.Fatalf("%s: %v %s", cmd, err, out)
		}
		copy(vm.models[disk][o:o+4096], bytes.Repeat([]byte{v}, 4096))
	}
}

// flush makes the written data durable in the images, as a guest's flush
// would, so that killing QEMU loses none of it.
func (vm *liveVM) flush(t *testing.T) {
	t.Helper()
	for i := range vm.models {
		cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/vdisk%d/virtio-backend "flush"`, i)
		if out, err := vm.test.HumanMonitorCommand(t.Context(), cmd); err != nil || strings.Contains(out, "rror") {
			t.Fatalf("%s: %v %s", cmd, err, out)
		}
	}
}

func (vm *liveVM) snapshotModels() [][]byte {
	out := make([][]byte, len(vm.models))
	for i, m := range vm.models {
		out[i] = bytes.Clone(m)
	}
	return out
}

func checkRestore(t *testing.T, r *repo.Repository, snap *repo.Snapshot, want [][]byte) {
	t.Helper()
	dir := t.TempDir()
	if err := recovery.RestoreSnapshot(t.Context(), r, snap, dir, recovery.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("vdisk%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("snapshot %s: restored vdisk%d differs from what the VM held at the snapshot", snap.ID, i)
		}
	}
}

// TestLiveQEMU: full, bitmap incremental, no-change, a failed run whose
// changes must not be lost, and a lost bitmap's fallback, on a real QEMU.
func TestLiveQEMU(t *testing.T) {
	vm := startLiveVM(t)
	mt := memtarget.New()
	faulty := targets.NewFaulty(mt)
	r, err := repo.Init(t.Context(), faulty, "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	opts := replicate.Options{VM: "live", QEMU: &replicate.QEMU{QMPSocket: vm.drctlSock, WorkDir: t.TempDir()}}
	run := func() *repo.Snapshot {
		t.Helper()
		s, err := replicate.Run(t.Context(), r, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	vm.write(t, 0, 0, 64<<10, 1)
	vm.write(t, 1, 8<<20, 128<<10, 2)
	s1 := run()
	want1 := vm.snapshotModels()
	if len(s1.Disks) != 2 || s1.Disks[0].ChangeSource != "full" || s1.Disks[0].Bitmap == "" || s1.Consistency != repo.ConsistencyCrash {
		t.Fatalf("first snapshot: %+v", s1.Disks)
	}
	if d := s1.Disks[1]; d.Name != "vdisk1" || d.Format != "qcow2" || d.Bus != "virtio" || d.Serial != "sn-1" || d.Size != liveDiskSize {
		t.Fatalf("disk spec: %+v", d)
	}
	wantNICs := []repo.NIC{
		{ID: "nic0", MAC: "52:54:00:aa:00:01", Model: "virtio-net-pci", Network: "lan"},
		{MAC: "52:54:00:aa:00:02", Model: "e1000", Network: "mgmt"},
	}
	if hw := s1.Hardware; hw == nil || hw.CPUs != 1 || hw.MemoryMiB != 64 || !strings.HasPrefix(hw.Machine, "pc-i440fx-") ||
		hw.Firmware != "bios" || hw.CPUModel == "" || !reflect.DeepEqual(hw.NICs, wantNICs) {
		t.Fatalf("hardware: %+v", hw)
	}

	// Scattered 4 KiB writes: only they are read.
	for i := range 20 {
		vm.write(t, i%2, int64(i)*(700<<10)%liveDiskSize/4096*4096, 4096, uint64(10+i))
	}
	s2 := run()
	want2 := vm.snapshotModels()
	if s2.Disks[0].ChangeSource != "bitmap" || s2.Stats.BytesRead > 20*4096 {
		t.Fatalf("incremental: change source %s, read %d bytes for 20 changed blocks", s2.Disks[0].ChangeSource, s2.Stats.BytesRead)
	}

	start := time.Now()
	s3 := run()
	if s3.Stats.BytesRead != 0 || s3.Stats.BlobsNew != 0 {
		t.Fatalf("no-change snapshot read %d bytes, stored %d blobs", s3.Stats.BytesRead, s3.Stats.BlobsNew)
	}
	t.Logf("no-change snapshot took %v", time.Since(start))

	// A run that fails at the upload: its changes must reach the next one.
	vm.write(t, 0, 4<<20, 8192, 40)
	faulty.Add(targets.Fault{Ops: []targets.Op{targets.OpPut}, Err: errors.New("injected upload failure"), Times: 1000})
	if _, err := replicate.Run(t.Context(), r, opts); err == nil {
		t.Fatal("a run with a failing target succeeded")
	}
	faulty.Clear()
	vm.write(t, 1, 12<<20, 4096, 41)
	s4 := run()
	want4 := vm.snapshotModels()
	if s4.Disks[0].ChangeSource != "bitmap" {
		t.Fatalf("after a failed run: change source %s (%s)", s4.Disks[0].ChangeSource, s4.Disks[0].Note)
	}

	// The bitmap disappears (a VM restarted without persistent bitmaps):
	// that disk is read in full and compared; nothing is missed.
	if err := vm.test.BitmapRemove(t.Context(), "disk0", s4.Disks[0].Bitmap); err != nil {
		t.Fatal(err)
	}
	vm.write(t, 0, 2<<20, 4096, 50)
	s5 := run()
	want5 := vm.snapshotModels()
	if s5.Disks[0].ChangeSource != "scan" || !strings.Contains(s5.Disks[0].Note, "missing") || s5.Disks[1].ChangeSource != "bitmap" {
		t.Fatalf("lost bitmap: disk0 %s (%s), disk1 %s", s5.Disks[0].ChangeSource, s5.Disks[0].Note, s5.Disks[1].ChangeSource)
	}

	for _, c := range []struct {
		s    *repo.Snapshot
		want [][]byte
	}{{s1, want1}, {s2, want2}, {s3, want2}, {s4, want4}, {s5, want5}} {
		checkRestore(t, r, c.s, c.want)
	}
}

// TestLiveQEMUKilled: QEMU dies in the middle of a snapshot. Nothing is
// committed; after a restart the bitmaps cannot be trusted (QEMU did not
// store them), so the next snapshot reads the disks in full, compares
// them with the parent, and misses nothing.
func TestLiveQEMUKilled(t *testing.T) {
	dir := t.TempDir()
	vm := startLiveVMIn(t, dir, nil)
	r, err := repo.Init(t.Context(), memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	opts := replicate.Options{VM: "live", QEMU: &replicate.QEMU{QMPSocket: vm.drctlSock, WorkDir: t.TempDir()}}
	vm.write(t, 0, 0, 256<<10, 1)
	if _, err := replicate.Run(t.Context(), r, opts); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		vm.write(t, i%2, int64(i)*(200<<10), 4096, uint64(100+i))
	}
	vm.flush(t)

	// Kill QEMU as soon as the snapshot is exported.
	done := make(chan error, 1)
	go func() {
		_, err := replicate.Run(t.Context(), r, opts)
		done <- err
	}()
	for {
		var exports []qmp.BlockExportInfo
		if exports, err = vm.test.QueryBlockExports(t.Context()); err == nil && len(exports) > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the snapshot finished before QEMU could be killed: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	vm.kill()
	if err := <-done; err == nil {
		t.Fatal("a snapshot whose VM died was committed")
	}
	refs, _ := r.ListSnapshots(t.Context(), "live")
	if len(refs) != 1 {
		t.Fatalf("%d snapshots after the failed one, want 1", len(refs))
	}

	vm = startLiveVMIn(t, dir, vm.models)
	opts.QEMU.QMPSocket = vm.drctlSock
	vm.write(t, 1, 3<<20, 4096, 200)
	s, err := replicate.Run(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range s.Disks {
		if d.ChangeSource != "scan" || d.Note == "" {
			t.Fatalf("after a QEMU crash, disk %s: change source %s (%q), want a compared full read", d.Name, d.ChangeSource, d.Note)
		}
	}
	checkRestore(t, r, s, vm.snapshotModels())
	// And the snapshot after that is an ordinary incremental again.
	vm.write(t, 0, 5<<20, 4096, 201)
	s2, err := replicate.Run(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Disks[0].ChangeSource != "bitmap" {
		t.Fatalf("after recovery: change source %s (%s)", s2.Disks[0].ChangeSource, s2.Disks[0].Note)
	}
	checkRestore(t, r, s2, vm.snapshotModels())
}

// TestLiveQEMUGuestFreeze: with a guest agent the snapshot is taken with
// the guest's file systems frozen and thawed right after; a failing or
// silent agent gives a crash-consistent snapshot, never a frozen guest.
func TestLiveQEMUGuestFreeze(t *testing.T) {
	vm := startLiveVM(t)
	r, err := repo.Init(t.Context(), memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		agent *qgatest.Agent
		want  string
		cmds  []string
	}{
		{"ok", &qgatest.Agent{}, repo.ConsistencyApp, []string{"guest-sync-delimited", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw"}},
		{"freeze fails", &qgatest.Agent{FailFreeze: true}, repo.ConsistencyCrash, []string{"guest-sync-delimited", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw"}},
		{"silent", &qgatest.Agent{Silent: true}, repo.ConsistencyCrash, []string{"guest-sync-delimited"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			agent := qgatest.Start(t, c.agent)
			vm.write(t, 0, 1<<20, 4096, 7)
			s, err := replicate.Run(t.Context(), r, replicate.Options{VM: "frozen", QEMU: &replicate.QEMU{
				QMPSocket: vm.drctlSock, QGASocket: agent.Socket, FreezeTimeout: 500 * time.Millisecond, WorkDir: t.TempDir(),
			}})
			if err != nil {
				t.Fatal(err)
			}
			if s.Consistency != c.want {
				t.Fatalf("consistency %s, want %s", s.Consistency, c.want)
			}
			if got := agent.Commands(); !slices.Equal(got, c.cmds) {
				t.Fatalf("agent got %v, want %v", got, c.cmds)
			}
			checkRestore(t, r, s, vm.snapshotModels())
		})
	}
}

// TestLiveQEMUGroup: two running VMs snapshotted as a consistency group are
// paused for the instant, resumed after, and get manifests with one
// instant and one group id.
func TestLiveQEMUGroup(t *testing.T) {
	a, b := startLiveVM(t), startLiveVM(t)
	for _, vm := range []*liveVM{a, b} {
		if err := vm.test.Cont(t.Context()); err != nil { // running, as in production
			t.Fatal(err)
		}
	}
	r, err := repo.Init(t.Context(), memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	members := []replicate.Options{
		{VM: "app", QEMU: &replicate.QEMU{QMPSocket: a.drctlSock, WorkDir: t.TempDir()}},
		{VM: "db", QEMU: &replicate.QEMU{QMPSocket: b.drctlSock, WorkDir: t.TempDir()}},
	}
	for round := range 2 {
		a.write(t, 0, int64(round)<<20, 8192, uint64(round))
		b.write(t, 1, int64(round)<<20, 4096, uint64(round+10))
		snaps, err := replicate.RunGroup(t.Context(), r, "shop", members)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != 2 || !snaps[0].Time.Equal(snaps[1].Time) || !slices.Equal(snaps[0].Tags, snaps[1].Tags) || !slices.Contains(snaps[0].Tags, "group=shop") {
			t.Fatalf("group snapshots: %+v / %+v", snaps[0], snaps[1])
		}
		if round == 1 && snaps[0].Disks[0].ChangeSource != "bitmap" {
			t.Fatalf("second group snapshot: change source %s (%s)", snaps[0].Disks[0].ChangeSource, snaps[0].Disks[0].Note)
		}
		checkRestore(t, r, snaps[0], a.snapshotModels())
		checkRestore(t, r, snaps[1], b.snapshotModels())
		for _, vm := range []*liveVM{a, b} {
			st, err := vm.test.QueryStatus(t.Context())
			if err != nil || !st.Running {
				t.Fatalf("a VM was left %q after the group snapshot (%v)", st.Status, err)
			}
		}
	}
	// A VM that was paused stays paused.
	if err := b.test.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := replicate.RunGroup(t.Context(), r, "shop", members); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.test.QueryStatus(t.Context()); st.Running {
		t.Fatal("a paused VM was resumed by the group snapshot")
	}
}

// fill writes one byte value over a range through disk i's device with a
// single qemu-io command (fast, for large ranges).
func (vm *liveVM) fill(t *testing.T, disk int, off, n int64, v byte) {
	t.Helper()
	cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/vdisk%d/virtio-backend "write -P %d %d %d"`, disk, v, off, n)
	if out, err := vm.test.HumanMonitorCommand(t.Context(), cmd); err != nil || strings.Contains(out, "rror") {
		t.Fatalf("%s: %v %s", cmd, err, out)
	}
	copy(vm.models[disk][off:off+n], bytes.Repeat([]byte{v}, int(n)))
}

// TestLiveQEMUNBDCut cuts the NBD connection while the snapshot is being
// read (QEMU drops the export with its clients, as when it is restarted or
// the socket dies): the run fails uncommitted, the bitmaps are merged
// back, and the next run is an incremental that has every change.
func TestLiveQEMUNBDCut(t *testing.T) {
	vm := startLiveVM(t)
	r, err := repo.Init(t.Context(), memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	opts := replicate.Options{VM: "live", QEMU: &replicate.QEMU{QMPSocket: vm.drctlSock, WorkDir: t.TempDir()}}
	vm.write(t, 0, 0, 64<<10, 1)
	if _, err := replicate.Run(t.Context(), r, opts); err != nil {
		t.Fatal(err)
	}

	cut := false
	for attempt := 0; attempt < 5 && !cut; attempt++ {
		// Both disks change in full, so the read takes a while.
		vm.fill(t, 0, 0, liveDiskSize, byte(0x40+attempt))
		vm.fill(t, 1, 0, liveDiskSize, byte(0x60+attempt))
		vm.write(t, attempt%2, int64(attempt+1)*(1<<20), 8192, uint64(50+attempt))
		counters := &replicate.Counters{}
		o := opts
		o.Counters = counters
		done := make(chan error, 1)
		go func() {
			_, err := replicate.Run(t.Context(), r, o)
			done <- err
		}()
		var runErr error
	wait:
		for {
			select {
			case runErr = <-done:
				break wait
			default:
			}
			if counters.BytesRead.Load() == 0 {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			exports, err := vm.test.QueryBlockExports(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range exports {
				// Errors are fine: the run may have finished meanwhile.
				_ = vm.test.Execute(t.Context(), "block-export-del", map[string]string{"id": e.ID, "mode": "hard"}, nil)
			}
			runErr = <-done
			break
		}
		if runErr == nil {
			t.Logf("attempt %d: the read finished before the cut; again", attempt)
			continue
		}
		cut = true
		t.Logf("cut mid-read: %v", runErr)
		refs, _ := r.ListSnapshots(t.Context(), "live")
		if len(refs) != 1+attempt {
			t.Fatalf("%d snapshots after the cut run, want %d", len(refs), 1+attempt)
		}
	}
	if !cut {
		t.Fatal("could not cut the NBD connection during a read in 5 attempts")
	}
	s, err := replicate.Run(t.Context(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range s.Disks {
		if d.ChangeSource != "bitmap" {
			t.Fatalf("after the cut, disk %s: change source %s (%s), want the merged bitmap", d.Name, d.ChangeSource, d.Note)
		}
	}
	if s.Stats.BytesRead < 2*liveDiskSize {
		t.Fatalf("after the cut read %d bytes: the changes of the failed run were lost", s.Stats.BytesRead)
	}
	checkRestore(t, r, s, vm.snapshotModels())
}
