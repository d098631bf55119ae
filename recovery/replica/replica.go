package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drctl/drctl/internal/qmp"
	"github.com/drctl/drctl/repo"
)

// ErrRunning is wrapped by Start's error when a replica of the VM already
// runs at the site.
var ErrRunning = errors.New("replica already running")

// ErrNotRunning is wrapped by Find's error when no replica of the VM runs.
var ErrNotRunning = errors.New("replica not running")

// Defaults of Site.
const (
	DefaultQEMU     = "qemu-system-x86_64"
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

const (
	// readyTimeout bounds Start's wait for QMP when ctx has no earlier
	// deadline: QEMU listens before the guest runs, within a second or
	// two even under TCG on a loaded host.
	readyTimeout = 60 * time.Second
	// statusTimeout bounds the QMP status query of Find and List. QMP
	// serves one client at a time, and a busy socket must not stall a
	// listing: Status is then left empty.
	statusTimeout = 3 * time.Second
	// maxSocketPath is the longest unix socket path (sun_path holds 108
	// bytes with the NUL).
	maxSocketPath = 107
)

// Site is the recovery site's directory of replicas, <Dir>/<vm>/ per VM.
// Its methods are safe for concurrent use; several Site values (and
// processes) may share one directory.
type Site struct {
	Dir    string
	Logger *slog.Logger // nil: no logging
	// QEMU is the emulator binary; default DefaultQEMU from $PATH.
	QEMU string
	// OVMFCode and OVMFVars are the UEFI firmware and the template of its
	// variable store; defaults DefaultOVMFCode and DefaultOVMFVars.
	OVMFCode, OVMFVars string

	mu       sync.Mutex
	machines map[string]bool // "qemu -machine help", read once
}

// NewSite returns a Site for dir.
func NewSite(dir string, logger *slog.Logger) *Site {
	return &Site{Dir: dir, Logger: logger}
}

// Replica is a replica VM at a site, as last seen.
type Replica struct {
	VM  string
	Dir string
	// PID is QEMU's process id; 0 when unknown.
	PID                                      int
	QMPSocket, QGASocket, SerialLog, QEMULog string
	Started                                  time.Time
	Running                                  bool
	// Status is QEMU's run state ("running", "paused", "shutdown", ...),
	// "" when not running or when QMP did not answer in time (QMP serves
	// one client at a time).
	Status string
	// Accel, Machine and Args are what QEMU was started with, and Spec
	// what it was started from (nil when replica.json is missing, or
	// belongs to another run than the running QEMU).
	Accel, Machine string
	Args           []string
	Spec           *Spec

	log *slog.Logger
}

// record is replica.json.
type record struct {
	VM      string    `json:"vm"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	QEMU    string    `json:"qemu"`
	Accel   string    `json:"accel"`
	Machine string    `json:"machine"`
	Args    []string  `json:"args"`
	Spec    Spec      `json:"spec"`
}

// files are the paths in a VM's state directory.
type files struct {
	dir, pid, qmp, qga, serial, qemuLog, record, startLock, vars string
}

func filesOf(dir string) files {
	j := func(name string) string { return filepath.Join(dir, name) }
	return files{dir: dir, pid: j("qemu.pid"), qmp: j("qmp.sock"), qga: j("qga.sock"), serial: j("serial.log"),
		qemuLog: j("qemu.log"), record: j("replica.json"), startLock: j("start.lock"), vars: j("OVMF_VARS.fd")}
}

func (s *Site) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Site) qemu() string {
	if s.QEMU != "" {
		return s.QEMU
	}
	return DefaultQEMU
}

// vmFiles returns the state directory paths of vm.
func (s *Site) vmFiles(vm string) (files, error) {
	if s.Dir == "" {
		return files{}, errors.New("site directory not set")
	}
	if !repo.NameRE.MatchString(vm) {
		return files{}, fmt.Errorf("vm name %q: use letters, digits, '.', '_' and '-'", vm)
	}
	site, err := filepath.Abs(s.Dir)
	if err != nil {
		return files{}, fmt.Errorf("site directory: %w", err)
	}
	return filesOf(filepath.Join(site, vm)), nil
}

// Start starts a replica of spec.VM and returns once QEMU answers on QMP
// (the guest is then booting; see package health for when it is up).
// QEMU keeps running after this process exits. If a replica of the VM
// runs at the site already, the error wraps ErrRunning and names its pid.
// Everything that can be checked without QEMU (files, networks, names) is
// checked before anything is created or started. If QEMU exits during
// start-up, or ctx ends first, the error carries QEMU's output and no
// QEMU is left running.
func (s *Site) Start(ctx context.Context, spec Spec) (*Replica, error) {
	r, err := s.start(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("start replica %s: %w", spec.VM, err)
	}
	return r, nil
}

func (s *Site) start(ctx context.Context, spec Spec) (*Replica, error) {
	log := s.logger().With("vm", spec.VM)
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	f, err := s.vmFiles(spec.VM)
	if err != nil {
		return nil, err
	}
	if len(f.qmp) > maxSocketPath || len(f.qga) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, over the unix socket limit of %d: use a shorter site directory",
			f.qmp, len(f.qmp), maxSocketPath)
	}
	p := &plan{spec: spec, files: f}
	if p.accel, err = resolveAccel(spec.Accel, os.Getenv, kvmUsable); err != nil {
		return nil, err
	}
	cpu, warning := cpuModel(spec.Hardware.CPUModel, p.accel)
	if warning != "" {
		log.Warn(warning)
	}
	p.cpu = cpu
	machines, err := s.machineTypes(ctx)
	if err != nil {
		return nil, err
	}
	p.machine, warning = pickMachine(spec.Hardware.Machine, machines)
	if warning != "" {
		log.Warn(warning)
	}
	if spec.Hardware.Firmware == "uefi" {
		p.ovmfCode = orDefault(s.OVMFCode, DefaultOVMFCode)
		if err := regularFile(p.ovmfCode); err != nil {
			return nil, fmt.Errorf("firmware uefi needs OVMF (Debian: apt install ovmf, or set the site's OVMF path): %w", err)
		}
	}
	if len(spec.Hardware.Extra) > 0 {
		log.Warn("recorded extra hardware arguments are not applied; put them in the spec's ExtraArgs to use them here",
			"extra", spec.Hardware.Extra)
	}

	if err := os.MkdirAll(f.dir, 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	unlock, err := lockStart(ctx, f.startLock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if pid, held, err := lockHolder(f.pid); err != nil {
		return nil, err
	} else if held {
		return nil, fmt.Errorf("%w: QEMU pid %d holds %s", ErrRunning, pid, f.pid)
	}
	if err := prepareDir(f); err != nil {
		return nil, err
	}
	if p.ovmfCode != "" {
		if p.ovmfVars, err = varsStore(f.vars, orDefault(s.OVMFVars, DefaultOVMFVars)); err != nil {
			return nil, err
		}
	}
	args, linkDown := p.qemuArgs()

	out, err := os.OpenFile(f.qemuLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("create QEMU log: %w", err)
	}
	cmd := exec.Command(s.qemu(), args...)
	cmd.Stdout, cmd.Stderr = out, out
	detach(cmd)
	err = cmd.Start()
	out.Close() // QEMU has its own copy
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", s.qemu(), err)
	}
	started := time.Now()
	// This process is QEMU's parent until it exits: reap it, so that it
	// does not linger as a zombie. exited tells the wait below about an
	// early death.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	pid := cmd.Process.Pid
	log = log.With("pid", pid)

	status, err := awaitReady(ctx, f, exited, linkDown)
	if err != nil {
		select {
		case <-exited:
			err = fmt.Errorf("QEMU exited during start-up (%v): %w", waitErr, err)
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if tail := logTail(f.qemuLog, 2000); tail != "" {
			err = fmt.Errorf("%w\nQEMU said:\n%s", err, tail)
		}
		if strings.Contains(err.Error(), "Cannot lock pid file") {
			// Another QEMU (not started through drctl) took the pidfile
			// between the check above and now.
			err = fmt.Errorf("%w: %w", ErrRunning, err)
		}
		return nil, err
	}

	rec := record{VM: spec.VM, PID: pid, Started: started, QEMU: s.qemu(), Accel: p.accel, Machine: p.machine, Args: args, Spec: spec}
	if err := writeRecord(f.record, rec); err != nil {
		// The replica runs; losing replica.json costs only details.
		log.Warn("replica running, but its record was not written", "err", err)
	}
	log.Info("replica started", "accel", p.accel, "machine", p.machine, "status", status, "dir", f.dir)
	r := replicaOf(f, rec, s.logger())
	r.Running, r.Status = true, status
	return r, nil
}

func orDefault(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// prepareDir readies the state directory of a VM that is not running:
// the previous run's logs are kept once as *.old (the reason it stopped
// is often in them), and stale sockets are removed so the wait for QMP
// cannot connect to a dead one.
func prepareDir(f files) error {
	for _, name := range []string{f.serial, f.qemuLog} {
		if err := os.Rename(name, name+".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keep previous log: %w", err)
		}
	}
	for _, name := range []string{f.qmp, f.qga} {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
	}
	return nil
}

// varsStore returns the VM's UEFI variable store, copying the template
// the first time: the store lives with the replica, so boot entries the
// guest writes survive its restarts. "" when there is no template (OVMF
// then runs without persistent variables).
func varsStore(path, template string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	src, err := os.ReadFile(template)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read UEFI variable template: %w", err)
	}
	if err := os.WriteFile(path, src, 0o640); err != nil {
		return "", fmt.Errorf("create UEFI variable store: %w", err)
	}
	return path, nil
}

// awaitReady waits until QMP answers, sets the links of unconnected NICs
// down and returns the run state.
func awaitReady(ctx context.Context, f files, exited <-chan struct{}, linkDown []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if _, err := os.Stat(f.qmp); err == nil {
			dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := qmp.Dial(dctx, f.qmp)
			dcancel()
			if err == nil {
				defer c.Close()
				return setUp(ctx, c, linkDown)
			}
			last = err
		}
		select {
		case <-exited:
			return "", errors.New("QMP never answered")
		case <-ctx.Done():
			if last != nil {
				return "", fmt.Errorf("wait for QMP: %w (last: %w)", ctx.Err(), last)
			}
			return "", fmt.Errorf("wait for QMP: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func setUp(ctx context.Context, c *qmp.Client, linkDown []string) (string, error) {
	for _, id := range linkDown {
		if err := c.Execute(ctx, "set_link", map[string]any{"name": id, "up": false}, nil); err != nil {
			return "", fmt.Errorf("set link of unconnected NIC %s down: %w", id, err)
		}
	}
	st, err := c.QueryStatus(ctx)
	if err != nil {
		return "", fmt.Errorf("query status: %w", err)
	}
	return st.Status, nil
}

// machineTypes returns the machine types of this QEMU, asking it once.
func (s *Site) machineTypes(ctx context.Context) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.machines != nil {
		return s.machines, nil
	}
	out, err := exec.CommandContext(ctx, s.qemu(), "-machine", "help").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("list machine types of %s (is QEMU installed? Debian: qemu-system-x86): %w", s.qemu(), err)
	}
	s.machines = parseMachines(string(out))
	return s.machines, nil
}

// Find returns the running replica of vm; the error wraps ErrNotRunning
// when there is none. A state directory whose QEMU died (a dead pid, a
// dead socket) is not running.
func (s *Site) Find(ctx context.Context, vm string) (*Replica, error) {
	f, err := s.vmFiles(vm)
	if err != nil {
		return nil, fmt.Errorf("find replica %s: %w", vm, err)
	}
	r, err := s.load(ctx, vm, f)
	if err != nil {
		return nil, fmt.Errorf("find replica %s: %w", vm, err)
	}
	if !r.Running {
		return nil, fmt.Errorf("find replica %s: %w (no QEMU holds %s)", vm, ErrNotRunning, f.pid)
	}
	return r, nil
}

// List returns the replicas of every VM with a state directory at the
// site, running or not, by name.
func (s *Site) List(ctx context.Context) ([]*Replica, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	var out []*Replica
	for _, e := range entries {
		if !e.IsDir() || !repo.NameRE.MatchString(e.Name()) {
			continue
		}
		f, err := s.vmFiles(e.Name())
		if err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		if !exists(f.pid) && !exists(f.record) {
			continue // not a state directory
		}
		r, err := s.load(ctx, e.Name(), f)
		if err != nil {
			return nil, fmt.Errorf("list replicas: %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// load reads a VM's state directory. The pidfile lock says whether it
// runs; replica.json adds the details when it belongs to that QEMU.
func (s *Site) load(ctx context.Context, vm string, f files) (*Replica, error) {
	pid, held, err := lockHolder(f.pid)
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(f.record)
	if err != nil {
		s.logger().Warn("unreadable replica record", "vm", vm, "err", err)
	}
	var r *Replica
	if rec != nil && (!held || pid == 0 || rec.PID == pid) {
		r = replicaOf(f, *rec, s.logger())
	} else {
		// No record, or one of an earlier run: a QEMU started by hand or
		// a Start still under way.
		r = replicaOf(f, record{VM: vm}, s.logger())
		r.Spec = nil
	}
	r.Running = held
	if !held {
		return r, nil
	}
	if pid != 0 {
		r.PID = pid
	}
	qctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if c, err := qmp.Dial(qctx, f.qmp); err != nil {
		s.logger().Debug("replica status unknown", "vm", vm, "err", err)
	} else {
		defer c.Close()
		if st, err := c.QueryStatus(qctx); err == nil {
			r.Status = st.Status
		}
	}
	return r, nil
}

func replicaOf(f files, rec record, log *slog.Logger) *Replica {
	spec := rec.Spec
	return &Replica{
		VM: rec.VM, Dir: f.dir, PID: rec.PID,
		QMPSocket: f.qmp, QGASocket: f.qga, SerialLog: f.serial, QEMULog: f.qemuLog,
		Started: rec.Started, Accel: rec.Accel, Machine: rec.Machine, Args: rec.Args, Spec: &spec,
		log: log.With("vm", rec.VM),
	}
}

func readRecord(path string) (*record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &rec, nil
}

// writeRecord replaces replica.json atomically, so a concurrent Find
// never reads half of it.
func writeRecord(path string, rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode replica record: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("write replica record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write replica record: %w", err)
	}
	return nil
}

// logTail is the end of a log file, from a line start.
func logTail(path string, n int64) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && fi.Size() > n {
		_, _ = fh.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(fh)
	s := string(b)
	if int64(len(s)) >= n {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}

// Stop shuts the replica down and returns once QEMU is gone: an ACPI
// power-down, up to grace for the guest to power off, then QMP quit (a
// clean exit for QEMU, which flushes the images; SIGTERM when QMP does not
// answer), then SIGKILL. Stopping a replica that is not running does
// nothing. If ctx ends first, Stop returns its error and QEMU may still
// run.
func (r *Replica) Stop(ctx context.Context, grace time.Duration) error {
	if err := r.stop(ctx, grace); err != nil {
		return fmt.Errorf("stop replica %s: %w", r.VM, err)
	}
	r.Running, r.Status = false, ""
	return nil
}

func (r *Replica) stop(ctx context.Context, grace time.Duration) error {
	if r.Dir == "" {
		return errors.New("replica has no state directory")
	}
	log := r.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := filesOf(r.Dir)
	pid, held, err := lockHolder(f.pid)
	if err != nil || !held {
		return err
	}
	log = log.With("pid", pid)

	dctx, cancel := context.WithTimeout(ctx, statusTimeout)
	c, err := qmp.Dial(dctx, f.qmp)
	cancel()
	if err != nil {
		log.Warn("QMP does not answer; skipping the ACPI power-down", "err", err)
	} else {
		defer c.Close()
		if err := c.Execute(ctx, "system_powerdown", nil, nil); err != nil {
			log.Warn("ACPI power-down failed", "err", err)
		} else {
			log.Info("ACPI power-down sent", "grace", grace)
			if gone, err := waitGone(ctx, f.pid, pid, grace); gone || err != nil {
				return err
			}
		}
	}

	if c != nil {
		log.Warn("guest did not power off; quitting QEMU")
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.Quit(qctx)
		cancel()
	}
	if c == nil || err != nil {
		log.Warn("sending SIGTERM", "quit_err", err)
		if err := signalHolder(f.pid, pid, syscall.SIGTERM); err != nil {
			log.Warn("SIGTERM failed", "err", err)
		}
	}
	if gone, err := waitGone(ctx, f.pid, pid, 10*time.Second); gone || err != nil {
		return err
	}

	log.Warn("QEMU did not exit; killing it")
	if err := signalHolder(f.pid, pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill QEMU %d: %w", pid, err)
	}
	if gone, err := waitGone(ctx, f.pid, pid, 10*time.Second); gone || err != nil {
		return err
	}
	return fmt.Errorf("QEMU %d still holds %s after SIGKILL", pid, f.pid)
}

// waitGone waits up to d for pid to release the pidfile lock, which the
// kernel does when the process exits, after it has closed its images.
func waitGone(ctx context.Context, pidfile string, pid int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		holder, held, err := lockHolder(pidfile)
		if err != nil {
			return false, err
		}
		if !held || holder != pid {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("wait for QEMU %d to exit: %w", pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
