package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procCPU returns a process's user+system CPU time and its resident set.
func procCPU(b *testing.B, pid int) (time.Duration, int64) {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var rss int64
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			rss = kb << 10
		}
	}
	const hz = 100 // USER_HZ
	return time.Duration(utime+stime) * time.Second / hz, rss
}

// pausedQEMU starts a QEMU with no guest (paused at start) and one qcow2
// disk: an idle VM as far as replication can tell.
func pausedQEMU(b *testing.B, dir string, i int) string {
	b.Helper()
	img := filepath.Join(dir, fmt.Sprintf("vm%d.qcow2", i))
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "64M").CombinedOutput(); err != nil {
		b.Fatalf("qemu-img: %v %s", err, out)
	}
	sock := filepath.Join(dir, fmt.Sprintf("vm%d.sock", i))
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none", "-m", "32", "-S",
		"-qmp", "unix:"+sock+",server=on,wait=off",
		"-blockdev", "driver=file,filename="+img+",node-name=f0", "-blockdev", "driver=qcow2,file=f0,node-name=d0",
		"-device", "virtio-blk-pci,drive=d0,id=vdisk0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 200 {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal("QEMU did not create its QMP socket")
	return ""
}

// BenchmarkAgent20IdleVMs runs `drctl agent` over 20 running but idle
// VMs, every one replicated every 10 s, for a minute, and reports the
// agent's CPU per hour at a 1-minute schedule (the yardstick:
// one round of 20 no-change snapshots a minute) and its RSS; then the
// same agent with no replication due, to report its idle cost.
func BenchmarkAgent20IdleVMs(b *testing.B) {
	e := &env{dir: b.TempDir()}
	e.vars = []string{"HOME=" + e.dir, "PATH=" + os.Getenv("PATH"), "DRCTL_PASSWORD=pw", "DRCTL_STATE_DIR=" + filepath.Join(e.dir, "state")}
	repo := filepath.Join(e.dir, "repo")
	if out, err := runIn(e, "init", "-r", repo); err != nil {
		b.Fatalf("init: %v %s", err, out)
	}
	const vms = 20
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "repository: %s\nsite: bench\nagent:\n  prune: \"off\"\n  max_jobs: 2\nvms:\n", repo)
	for i := range vms {
		fmt.Fprintf(&cfg, "  vm%d:\n    qmp: %s\n    schedule: \"%s\"\n", i, pausedQEMU(b, e.dir, i), "*/10 * * * * *")
	}
	cfgFile := filepath.Join(e.dir, "drctl.yaml")
	os.WriteFile(cfgFile, []byte(cfg.String()), 0o600)
	// Full snapshots first, outside the measurement.
	if out, err := runIn(e, "agent", "--config", cfgFile, "--once"); err != nil {
		b.Fatalf("agent --once: %v %s", err, out)
	}

	for b.Loop() {
		cmd := exec.Command(drctlBin, "agent", "--config", cfgFile, "--log-level", "error")
		cmd.Env, cmd.Dir = e.vars, e.dir
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second) // start-up and key derivation
		cpu0, _ := procCPU(b, cmd.Process.Pid)
		const window = 60 * time.Second
		time.Sleep(window)
		cpu1, rss := procCPU(b, cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		rounds := float64(window / (10 * time.Second))
		perRound := (cpu1 - cpu0).Seconds() / rounds
		b.ReportMetric(perRound*60, "cpu-s/hour@1min")
		b.ReportMetric(perRound/vms*1000, "cpu-ms/snapshot")
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	}

	// Idle: nothing due for a year.
	idle := strings.ReplaceAll(cfg.String(), "*/10 * * * * *", "0 0 1 1 *")
	os.WriteFile(cfgFile, []byte(idle), 0o600)
	cmd := exec.Command(drctlBin, "agent", "--config", cfgFile, "--log-level", "error")
	cmd.Env, cmd.Dir = e.vars, e.dir
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	cpu0, _ := procCPU(b, cmd.Process.Pid)
	time.Sleep(30 * time.Second)
	cpu1, rss := procCPU(b, cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	b.ReportMetric((cpu1-cpu0).Seconds()/30*3600, "idle-cpu-s/hour")
	b.ReportMetric(float64(rss)/(1<<20), "idle-rss-MiB")
}

func runIn(e *env, args ...string) (string, error) {
	cmd := exec.Command(drctlBin, args...)
	cmd.Env, cmd.Dir = e.vars, e.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
