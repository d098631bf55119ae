package testvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drctl/drctl/internal/syncbuf"
)

// Mode is the guest's workload (drtest.mode on the kernel command line).
type Mode string

// The workloads of init.sh; see the package documentation.
const (
	ModeIdle    Mode = "idle"
	ModeSeq     Mode = "seq"
	ModeScatter Mode = "scatter"
	ModeProbe   Mode = "probe"
	ModeVerify  Mode = "verify"
	ModeHalt    Mode = "halt"
)

// Disk is one data disk of the guest.
type Disk struct {
	// Size of a new, empty image in bytes; ignored with Path.
	Size int64
	// Path of an existing image to attach instead, e.g. a restored
	// replica.
	Path string
	// Format is "qcow2" or "raw". The default is qcow2 for new images;
	// for Path, what the file holds.
	Format string
}

// Options describe a guest.
type Options struct {
	Mode Mode // default ModeIdle
	// Disks are the data disks: disk i gets virtio serial drdisk<i>,
	// QEMU node names file<i> (protocol) and disk<i> (format), and
	// device id vdisk<i>.
	Disks []Disk
	// Dir holds the VM's files (new images, serial log, sockets).
	// Launch needs it; Start uses t.TempDir() when empty.
	Dir string
	// Artifacts is the built guest. Launch needs it; Start builds it.
	Artifacts *Artifacts
	// Accel is "tcg", "kvm" or "auto"; empty means $DRCTL_TESTVM_ACCEL,
	// else auto (see resolveAccel).
	Accel string
	// MemoryMiB defaults to 256.
	MemoryMiB int
	// Net adds QEMU user networking; the guest's eth0 gets 10.0.2.15.
	Net bool
	// SeqStart is the first record of ModeSeq: 0 on fresh disks, or one
	// past the B disk's last record to continue a sequence (CheckSeq).
	SeqStart int64
	// Blocks limits ModeSeq's ring and ModeScatter's range to the first
	// Blocks 4 KiB blocks of the disks (0: the whole smallest disk).
	Blocks int64
	// ScatterRate is ModeScatter's writes per second (0: flat out).
	ScatterRate int
	// VerifyOffset is where ModeVerify and ModeIdle read the 64 bytes
	// they print; a multiple of 64.
	VerifyOffset int64
	// ProbeWindowMs is how often ModeProbe reports (default 500 ms).
	ProbeWindowMs int
	// Append are more kernel command line parameters.
	Append []string
	// QEMUArgs are more QEMU arguments.
	QEMUArgs []string
}

// VM is a running QEMU with the test guest.
type VM struct {
	cmd         *exec.Cmd
	args        []string
	accel       string
	dir         string
	sockDir     string // a short directory for the sockets when dir is too long
	serialPath  string
	qmpPath     string
	testQMPPath string
	disks       []string
	formats     []string
	started     time.Time
	stderr      *syncbuf.Buffer
	exited      chan struct{}
	waitErr     error // valid once exited is closed
	qmpMu       sync.Mutex
	cleanOnce   sync.Once
	reported    atomic.Bool // an error carried the diagnostics
}

// MAC address of the guest's network card.
const guestMAC = "52:54:00:d7:00:01"

// Launch starts QEMU with the guest. ctx bounds only the start (creating
// images, the KVM probe, waiting for the monitor sockets); the VM runs
// until Kill, Shutdown or the guest powers off.
func Launch(ctx context.Context, opts Options) (*VM, error) {
	if opts.Artifacts == nil {
		return nil, errors.New("launch test VM: Options.Artifacts is nil (see Build)")
	}
	if opts.Dir == "" {
		return nil, errors.New("launch test VM: Options.Dir is empty")
	}
	if opts.Mode == "" {
		opts.Mode = ModeIdle
	}
	switch opts.Mode {
	case ModeIdle, ModeSeq, ModeScatter, ModeProbe, ModeVerify, ModeHalt:
	default:
		return nil, fmt.Errorf("launch test VM: unknown mode %q", opts.Mode)
	}
	if opts.Mode == ModeSeq && len(opts.Disks) < 2 {
		return nil, errors.New("launch test VM: seq mode needs two disks")
	}
	if opts.VerifyOffset%64 != 0 || opts.VerifyOffset < 0 || opts.SeqStart < 0 || opts.Blocks < 0 || opts.ScatterRate < 0 {
		return nil, errors.New("launch test VM: negative option, or VerifyOffset not a multiple of 64")
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 256
	}
	qemu, err := lookQEMU()
	if err != nil {
		return nil, err
	}
	accel, err := resolveAccel(ctx, qemu, opts)
	if err != nil {
		return nil, err
	}
	vm := &VM{
		accel:      accel,
		dir:        opts.Dir,
		serialPath: filepath.Join(opts.Dir, "serial.log"),
		stderr:     &syncbuf.Buffer{},
		exited:     make(chan struct{}),
	}
	if err := vm.prepareDisks(ctx, opts.Disks); err != nil {
		return nil, err
	}
	if err := vm.prepareSockets(); err != nil {
		return nil, err
	}
	vm.args = vm.qemuArgs(opts)
	vm.cmd = exec.Command(qemu, vm.args...)
	vm.cmd.Stdout, vm.cmd.Stderr = vm.stderr, vm.stderr
	setProcAttr(vm.cmd)
	if err := vm.cmd.Start(); err != nil {
		vm.cleanup()
		return nil, fmt.Errorf("start QEMU: %w", err)
	}
	vm.started = time.Now()
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()
	if err := vm.waitSockets(ctx); err != nil {
		_ = vm.Kill()
		return nil, err
	}
	return vm, nil
}

// prepareDisks creates the images that do not exist yet and settles
// each disk's format.
func (vm *VM) prepareDisks(ctx context.Context, disks []Disk) error {
	for i, d := range disks {
		if d.Path != "" {
			if d.Format == "" {
				f, err := sniffFormat(d.Path)
				if err != nil {
					return err
				}
				d.Format = f
			}
			vm.disks = append(vm.disks, d.Path)
			vm.formats = append(vm.formats, d.Format)
			continue
		}
		if d.Format == "" {
			d.Format = "qcow2"
		}
		path := filepath.Join(vm.dir, fmt.Sprintf("disk%d.%s", i, d.Format))
		if err := CreateImage(ctx, path, d.Format, d.Size); err != nil {
			return err
		}
		vm.disks = append(vm.disks, path)
		vm.formats = append(vm.formats, d.Format)
	}
	return nil
}

// sniffFormat tells qcow2 (by its magic) from raw, so that a restored
// raw replica can be attached without naming its format.
func sniffFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("launch test VM: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err == nil && string(magic) == "QFI\xfb" {
		return "qcow2", nil
	}
	return "raw", nil
}

// prepareSockets places the two monitor sockets. A unix socket path has
// at most 107 bytes, which a deep t.TempDir() can exceed.
func (vm *VM) prepareSockets() error {
	dir := vm.dir
	if len(filepath.Join(dir, "qmp-test.sock")) > 100 {
		d, err := os.MkdirTemp("", "drtvm-")
		if err != nil {
			return fmt.Errorf("launch test VM: %w", err)
		}
		vm.sockDir, dir = d, d
	}
	vm.qmpPath = filepath.Join(dir, "qmp.sock")
	vm.testQMPPath = filepath.Join(dir, "qmp-test.sock")
	return nil
}

// qemuArgs is the QEMU command line. -M pc because microvm hangs in TSC
// calibration under TCG on a loaded host; -nodefaults so the only
// devices are ours; -no-reboot so a guest power-off or panic (panic=-1)
// ends QEMU.
func (vm *VM) qemuArgs(opts Options) []string {
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1",
		"drtest.mode=" + string(opts.Mode), "drtest.disks=" + strconv.Itoa(len(opts.Disks))}
	if opts.Net {
		cmdline = append(cmdline, "drtest.net=1")
	}
	for _, p := range []struct {
		name string
		v    int64
	}{{"start", opts.SeqStart}, {"blocks", opts.Blocks}, {"rate", int64(opts.ScatterRate)}, {"offset", opts.VerifyOffset}, {"window", int64(opts.ProbeWindowMs)}} {
		if p.v != 0 {
			cmdline = append(cmdline, fmt.Sprintf("drtest.%s=%d", p.name, p.v))
		}
	}
	cmdline = append(cmdline, opts.Append...)
	a := opts.Artifacts
	args := []string{
		"-accel", vm.accel, "-M", "pc", "-cpu", "max", "-smp", "1", "-m", strconv.Itoa(opts.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", a.Kernel, "-initrd", a.Initrd, "-append", strings.Join(cmdline, " "),
		// Chardevs rather than -serial file: and -qmp unix:, whose
		// paths cannot hold a comma (t.TempDir() names can).
		"-chardev", "file,id=serial0,path=" + optEscape(vm.serialPath), "-serial", "chardev:serial0",
		"-chardev", "socket,id=qmp0,server=on,wait=off,path=" + optEscape(vm.qmpPath),
		"-mon", "chardev=qmp0,mode=control",
		"-chardev", "socket,id=qmp1,server=on,wait=off,path=" + optEscape(vm.testQMPPath),
		"-mon", "chardev=qmp1,mode=control",
	}
	for i, path := range vm.disks {
		format := vm.formats[i]
		// JSON, so that no path needs QEMU's comma escaping.
		file, _ := json.Marshal(map[string]string{"driver": "file", "filename": path, "node-name": fmt.Sprintf("file%d", i)})
		disk, _ := json.Marshal(map[string]string{"driver": format, "file": fmt.Sprintf("file%d", i), "node-name": fmt.Sprintf("disk%d", i)})
		args = append(args, "-blockdev", string(file), "-blockdev", string(disk),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,id=vdisk%d,serial=drdisk%d", i, i, i))
	}
	if opts.Net {
		args = append(args, "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac="+guestMAC)
	}
	return append(args, opts.QEMUArgs...)
}

// optEscape quotes a value for QEMU's key=value option syntax.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// waitSockets waits until QEMU listens on both monitor sockets, which it
// does before the guest runs.
func (vm *VM) waitSockets(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err1 := os.Stat(vm.qmpPath)
		_, err2 := os.Stat(vm.testQMPPath)
		if err1 == nil && err2 == nil {
			return nil
		}
		select {
		case <-vm.exited:
			return fmt.Errorf("QEMU exited at start: %v\n%s", vm.waitErr, vm.errDiagnostics())
		case <-ctx.Done():
			return fmt.Errorf("waiting for QEMU's monitor sockets: %w\n%s", ctx.Err(), vm.errDiagnostics())
		case <-tick.C:
		}
	}
}

// Kill ends QEMU at once (SIGKILL to its process group) and waits for
// it. Images are left as a crash leaves them: qcow2 metadata QEMU had
// not flushed is lost, so use Shutdown before reading images.
func (vm *VM) Kill() error {
	select {
	case <-vm.exited:
	default:
		_ = killGroup(vm.cmd)
		select {
		case <-vm.exited:
		case <-time.After(10 * time.Second):
			return errors.New("kill test VM: QEMU did not exit")
		}
	}
	vm.cleanup()
	return nil
}

// Shutdown quits QEMU through the test's monitor, which flushes and
// closes the images, and waits for it to exit; if ctx ends first, it
// kills QEMU. The guest gets no warning, like a power cut.
func (vm *VM) Shutdown(ctx context.Context) error {
	select {
	case <-vm.exited:
		vm.cleanup()
		return nil
	default:
	}
	// QEMU may exit before it answers quit: judge by the exit, but do
	// not wait long when quit did not get through.
	_, qerr := vm.QMP(ctx, "quit", nil)
	if qerr != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	select {
	case <-vm.exited:
		vm.cleanup()
		return nil
	case <-ctx.Done():
		_ = vm.Kill()
		return fmt.Errorf("shut down test VM: %w", errors.Join(ctx.Err(), qerr))
	}
}

// Wait waits for QEMU to exit by itself (ModeVerify and ModeHalt power
// off) and returns its exit error.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.exited:
		vm.cleanup()
		if vm.waitErr != nil {
			return fmt.Errorf("QEMU: %w\n%s", vm.waitErr, vm.errDiagnostics())
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU to exit: %w\n%s", ctx.Err(), vm.errDiagnostics())
	}
}

// cleanup removes the short socket directory, once QEMU is gone.
func (vm *VM) cleanup() {
	vm.cleanOnce.Do(func() {
		if vm.sockDir != "" {
			_ = os.RemoveAll(vm.sockDir)
		}
	})
}

// QMP runs one command on the test's monitor socket (not the one drctl
// uses) and returns its "return" value.
func (vm *VM) QMP(ctx context.Context, command string, args any) (json.RawMessage, error) {
	vm.qmpMu.Lock() // a QMP socket takes one client at a time
	defer vm.qmpMu.Unlock()
	return qmpRun(ctx, vm.testQMPPath, command, args)
}

// DiskPaths are the data disk images, in Options.Disks order.
func (vm *VM) DiskPaths() []string { return append([]string(nil), vm.disks...) }

// QMPSocket is the monitor socket for drctl (the code under test).
func (vm *VM) QMPSocket() string { return vm.qmpPath }

// TestQMPSocket is the test's own monitor socket, used by QMP and
// Shutdown.
func (vm *VM) TestQMPSocket() string { return vm.testQMPPath }

// Accel is the accelerator QEMU runs with: "tcg" or "kvm".
func (vm *VM) Accel() string { return vm.accel }

// Dir is the VM's directory.
func (vm *VM) Dir() string { return vm.dir }

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// errDiagnostics is Diagnostics for an error message; Start then need
// not log them again.
func (vm *VM) errDiagnostics() string {
	vm.reported.Store(true)
	return vm.Diagnostics()
}

// Diagnostics is what a failure message needs: the command line, QEMU's
// exit and output, and the end of the serial log.
func (vm *VM) Diagnostics() string {
	var b strings.Builder
	fmt.Fprintf(&b, "qemu-system-x86_64 %s\n", strings.Join(vm.args, " "))
	select {
	case <-vm.exited:
		fmt.Fprintf(&b, "QEMU exited: %v\n", vm.waitErr)
	default:
		b.WriteString("QEMU running\n")
	}
	if out := vm.stderr.String(); out != "" {
		fmt.Fprintf(&b, "QEMU output:\n%s\n", tail(out, 2000))
	}
	fmt.Fprintf(&b, "serial log %s (end):\n%s", vm.serialPath, tail(vm.Serial(), 4000))
	return b.String()
}

// tail is the last n bytes of s, from a line start when it can.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}
