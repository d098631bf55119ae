package testvm

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A fake module tree: dependencies come first, built-in modules are
// skipped, names are normalised, and .ko.xz files are decompressed.
func TestResolveModules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", strings.Join([]string{
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_ring.ko:",
		"kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio-pci-dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio-pci-dev.ko:",
		"kernel/a.ko: kernel/b.ko",
		"kernel/b.ko: kernel/a.ko",
	}, "\n"))
	write("modules.builtin", "kernel/drivers/net/virtio_net.ko\n")
	xz, err := exec.Command("sh", "-c", "printf 'a compressed module' | xz -c --check=crc32").Output()
	if err != nil {
		t.Fatalf("xz (xz-utils): %v", err)
	}
	write("kernel/drivers/virtio/virtio_pci.ko.xz", string(xz))

	mods, err := resolveModules(dir, []string{"virtio_pci", "virtio_blk", "virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.name)
	}
	want := []string{"virtio_pci_dev", "virtio_ring", "virtio", "virtio_pci", "virtio_blk"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("load order %v, want %v", names, want)
	}
	data, err := readModule(mods[3].path)
	if err != nil || string(data) != "a compressed module" {
		t.Errorf("virtio_pci.ko.xz: %q, %v; want the module's content", data, err)
	}

	if _, err := resolveModules(dir, []string{"nosuch"}); err == nil {
		t.Error("an unknown module resolved")
	}
	if _, err := resolveModules(dir, []string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err %v", err)
	}
}
