package testvm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
)

// readStaticBusybox reads the busybox binary and checks that it is
// statically linked: the initramfs has no C library, and Debian's
// "busybox" package installs a dynamic /bin/busybox where
// "busybox-static" installs a static one.
func readStaticBusybox(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, missingf("busybox: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("busybox %s: %w", path, err)
	}
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("busybox %s is for %v, the guest is x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, missingf("busybox %s is dynamically linked: the guest needs busybox-static", path)
		}
	}
	return data, nil
}
