package testvm

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// initScript is the guest's /init: the workloads live there.
//
//go:embed init.sh
var initScript []byte

// initramfsInputs is everything the initramfs is made of, read from the
// host once so that the cache key and the archive see the same bytes.
type initramfsInputs struct {
	busybox []byte
	applets []string
	modules []kmod
	modData [][]byte
}

// readInitramfsInputs reads busybox, its applet list and the modules.
func readInitramfsInputs(ctx context.Context, busyboxPath string, modules []kmod) (*initramfsInputs, error) {
	bb, err := readStaticBusybox(busyboxPath)
	if err != nil {
		return nil, err
	}
	// The applet list comes from the binary itself: it is the same
	// static x86-64 executable the guest runs.
	out, err := exec.CommandContext(ctx, busyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	in := &initramfsInputs{busybox: bb, modules: modules}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.ContainsAny(a, "/.") {
			in.applets = append(in.applets, a)
		}
	}
	sort.Strings(in.applets)
	for _, m := range modules {
		data, err := readModule(m.path)
		if err != nil {
			return nil, err
		}
		in.modData = append(in.modData, data)
	}
	return in, nil
}

// buildInitramfs returns the gzip-compressed newc archive: busybox with a
// symlink per applet in /bin, the modules in /lib/modules with their load
// order in /lib/modules/order, /dev/console (the kernel opens it for
// /init's output before /init can mount devtmpfs) and /init.
func buildInitramfs(in *initramfsInputs) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "dev", "lib", "lib/modules", "proc", "sys", "tmp"} {
		c.dir(d)
	}
	c.charDev("dev/console", 0o600, 5, 1)
	c.file("bin/busybox", 0o755, in.busybox)
	for _, a := range in.applets {
		c.symlink("bin/"+a, "busybox")
	}
	var order strings.Builder
	for i, m := range in.modules {
		c.file("lib/modules/"+m.name+".ko", 0o644, in.modData[i])
		order.WriteString(m.name + "\n")
	}
	c.file("lib/modules/order", 0o644, []byte(order.String()))
	c.file("init", 0o755, initScript)
	if err := c.close(); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return buf.Bytes(), nil
}
