package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drctl/drctl/internal/qmp"
)

// cmdLive compares drctl replicating a running QEMU VM (dirty bitmaps, only
// changed blocks read) with restic backing up the same disk as an image
// file (which it must read whole): full, then after scattered 4 KiB guest
// writes, then with no change.
func cmdLive(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	drctl := fs.String("drctl", "bin/drctl", "drctl binary")
	restic := fs.String("restic", ".tools/bin/restic", "restic binary")
	cache := fs.String("cache", ".cache/bench", "image cache")
	diskSize := fs.String("disk-size", "8G", "virtual size of the VM's disk (the 2 GiB ext4 image is its start)")
	fraction := fs.Float64("fraction", 0.01, "share of the image's 4 KiB blocks the guest rewrites between snapshots")
	keep := fs.Bool("keep", false, "keep the work directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The tools run in the work directory.
	for _, p := range []*string{drctl, restic, cache} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", *p, err)
		}
		*p = abs
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run make deps", tool)
		}
	}
	base, err := ensureImage(ctx, imageSpec{Kind: "ext4", Size: 2 << 30, Seed: 1}, *cache)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(*cache, "live-")
	if err != nil {
		return fmt.Errorf("make work dir: %w", err)
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	disk := filepath.Join(work, "disk.qcow2")
	for _, a := range [][]string{{"convert", "-O", "qcow2", base, disk}, {"resize", "-q", disk, *diskSize}} {
		if o, err := exec.CommandContext(ctx, "qemu-img", a...).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img %s: %w: %s", a[0], err, o)
		}
	}
	drctlSock, testSock := filepath.Join(work, "drctl.qmp"), filepath.Join(work, "test.qmp")
	vm := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-nodefaults", "-display", "none", "-m", "256", "-S",
		"-qmp", "unix:"+drctlSock+",server=on,wait=off", "-qmp", "unix:"+testSock+",server=on,wait=off",
		"-blockdev", "driver=file,filename="+disk+",node-name=file0",
		"-blockdev", "driver=qcow2,file=file0,node-name=disk0",
		"-device", "virtio-blk-pci,drive=disk0,id=vdisk0")
	vm.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := vm.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	defer func() { vm.Process.Kill(); vm.Wait() }()
	var c *qmp.Client
	for deadline := time.Now().Add(15 * time.Second); ; {
		if c, err = qmp.Dial(ctx, testSock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("qemu's QMP socket: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	hmp := func(cmd string) error {
		o, err := c.HumanMonitorCommand(ctx, `qemu-io -d /machine/peripheral/vdisk0/virtio-backend "`+cmd+`"`)
		if err == nil && strings.Contains(o, "rror") {
			err = errors.New(o)
		}
		return err
	}

	dEnv := []string{"DRCTL_PASSWORD=" + benchPassword, "DRCTL_STATE_DIR=" + filepath.Join(work, "state"), "HOME=" + work, "PATH=" + os.Getenv("PATH")}
	rEnv := []string{"RESTIC_PASSWORD=" + benchPassword, "RESTIC_CACHE_DIR=" + filepath.Join(work, "restic-cache"), "HOME=" + work, "PATH=" + os.Getenv("PATH")}
	dRepo, rRepo := filepath.Join(work, "drctl-repo"), filepath.Join(work, "restic-repo")
	raw := filepath.Join(work, "disk.raw")
	type row struct {
		step, tool string
		m          measurement
		read       int64
		stored     int64
	}
	var rows []row
	run := func(step, tool string, env []string, args ...string) error {
		dropCaches()
		m, err := measure(ctx, command{Dir: work, Env: env, Args: args, Log: filepath.Join(work, slug(step+"-"+tool)+".log")})
		if err != nil {
			return err
		}
		r := row{step: step, tool: tool, m: m}
		if tool == "drctl" {
			r.read, r.stored = m.Summary.int("bytes_read"), m.Summary.int("bytes_uploaded")
		} else {
			r.read, r.stored = m.Summary.int("total_bytes_processed"), m.Summary.int("data_added_packed")
		}
		rows = append(rows, r)
		return nil
	}
	// export writes the VM's disk as the raw image file restic backs up.
	export := func() error {
		if err := hmp("flush"); err != nil {
			return err
		}
		os.Remove(raw)
		if o, err := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-O", "raw", disk, raw).CombinedOutput(); err != nil {
			return fmt.Errorf("export raw image: %w: %s", err, o)
		}
		return nil
	}
	replicate := []string{*drctl, "replicate", "-r", dRepo, "--vm", "live", "--qmp", drctlSock, "--json"}
	backup := []string{*restic, "-r", rRepo, "backup", "--json", raw}
	steps := []func() error{
		func() error { return run("init", "drctl", dEnv, *drctl, "init", "-r", dRepo) },
		func() error { return run("init", "restic", rEnv, *restic, "init", "-r", rRepo) },
		func() error { return run("full", "drctl", dEnv, replicate...) },
		export,
		func() error { return run("full", "restic", rEnv, backup...) },
		func() error {
			n := int(*fraction * float64(2<<30/4096))
			rng := rand.New(rand.NewPCG(42, 0))
			start := time.Now()
			for _, b := range rng.Perm(2 << 30 / 4096)[:n] {
				if err := hmp(fmt.Sprintf("write -P %d %d 4096", rng.IntN(255)+1, int64(b)*4096)); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "guest writes: %d scattered 4 KiB blocks (%.1f MiB) in %v\n", n, float64(n)*4096/(1<<20), time.Since(start).Round(time.Millisecond))
			return nil
		},
		func() error { return run("incremental", "drctl", dEnv, replicate...) },
		export,
		func() error { return run("incremental", "restic", rEnv, backup...) },
		func() error { return run("no change", "drctl", dEnv, replicate...) },
		func() error { return run("no change", "restic", rEnv, backup...) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "\n## Live VM (QEMU, dirty bitmaps) vs restic on the same disk as an image file\n\n")
	fmt.Fprintf(out, "disk: %s virtual, started from the 2 GiB ext4 image; %s\n\n", *diskSize, machineLine())
	fmt.Fprintln(out, "| step | tool | wall s | CPU s | max RSS MiB | read MiB | uploaded / stored MiB |")
	fmt.Fprintln(out, "|---|---|--:|--:|--:|--:|--:|")
	mib := func(n int64) string {
		if n < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.1f", float64(n)/(1<<20))
	}
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %s | %.2f | %.2f | %.1f | %s | %s |\n", r.step, r.tool, r.m.Wall.Seconds(), r.m.CPU.Seconds(),
			float64(r.m.MaxRSS)/(1<<20), mib(r.read), mib(r.stored))
	}
	for i := 0; i+1 < len(rows); i += 2 {
		if rows[i].step == rows[i+1].step && rows[i+1].m.Wall > 0 {
			fmt.Fprintf(out, "\n%s: drctl/restic wall time %.3f×", rows[i].step, rows[i].m.Wall.Seconds()/rows[i+1].m.Wall.Seconds())
		}
	}
	fmt.Fprintln(out)
	return nil
}
