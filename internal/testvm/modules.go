package testvm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// guestModules are what the guest needs to see its disks and network on
// -M pc. Debian builds virtio as modules (CONFIG_VIRTIO_BLK=m and so on);
// a kernel with them built in simply has nothing to load.
var guestModules = []string{"virtio_pci", "virtio_blk", "virtio_net"}

// kmod is one kernel module to put into the initramfs.
type kmod struct {
	name string // as insmod and lsmod spell it: dashes become underscores
	path string // the file under /lib/modules/VERSION
}

// moduleName turns "kernel/drivers/block/virtio_blk.ko.xz" into
// "virtio_blk".
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// resolveModules lists the wanted modules and everything they depend on
// (from depmod's modules.dep), dependencies first: busybox insmod does not
// resolve them, and loading virtio before virtio_ring fails with "unknown
// symbol". Modules built into the kernel (modules.builtin) are skipped.
func resolveModules(dir string, want []string) ([]kmod, error) {
	deps := map[string][]string{}
	paths := map[string]string{}
	err := readLines(filepath.Join(dir, "modules.dep"), func(line string) {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		name := moduleName(mod)
		paths[name] = mod
		for _, d := range strings.Fields(rest) {
			deps[name] = append(deps[name], moduleName(d))
			if _, ok := paths[moduleName(d)]; !ok {
				paths[moduleName(d)] = d
			}
		}
	})
	if err != nil {
		return nil, missingf("kernel modules: %w", err)
	}
	builtin := map[string]bool{}
	if err := readLines(filepath.Join(dir, "modules.builtin"), func(line string) {
		builtin[moduleName(line)] = true
	}); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}

	var order []kmod
	seen := map[string]bool{}
	var visit func(name string, from []string) error
	visit = func(name string, from []string) error {
		if seen[name] || builtin[name] {
			return nil
		}
		for _, f := range from {
			if f == name {
				return fmt.Errorf("kernel modules: dependency cycle through %s", name)
			}
		}
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("kernel modules: %s is neither in %s/modules.dep nor built in", name, dir)
		}
		for _, d := range deps[name] {
			if err := visit(d, append(from, name)); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, kmod{name: name, path: filepath.Join(dir, p)})
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// readModule returns a module's ELF, decompressing .ko.xz, .ko.zst and
// .ko.gz (CONFIG_MODULE_COMPRESS_*): busybox insmod wants it plain.
func readModule(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kernel module: %w", err)
	}
	const maxModule = 64 << 20
	switch {
	case strings.HasSuffix(path, ".ko"):
		return data, nil
	case strings.HasSuffix(path, ".ko.xz"):
		out, err := xzDecode(data, maxModule)
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		return out, nil
	case strings.HasSuffix(path, ".ko.zst"):
		zr, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxModule), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		defer zr.Close()
		out, err := zr.DecodeAll(data, nil)
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		return out, nil
	case strings.HasSuffix(path, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxModule))
		if err != nil {
			return nil, fmt.Errorf("kernel module %s: %w", path, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("kernel module %s: unknown file type", path)
}

func readLines(path string, f func(string)) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			f(line)
		}
	}
	return sc.Err()
}
