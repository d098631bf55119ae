package testvm

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Booting the distribution's bzImage under TCG spends most of its time in
// the kernel's own decompressor (Debian's is xz): about 9 s against 4 s
// for the uncompressed ELF vmlinux inside it, which QEMU boots directly
// through its PVH entry point (CONFIG_PVH). So the kernel is extracted
// once and cached.

// maxVmlinux bounds the decompressed kernel, so corrupt sizes cannot
// exhaust memory; Debian's 6.1 vmlinux is 63 MiB.
const maxVmlinux = 512 << 20

// errNoPVH says the kernel cannot be booted as an ELF: the caller boots
// the bzImage instead.
var errNoPVH = errors.New("no PVH-bootable vmlinux in the kernel image")

// findKernel returns the newest vmlinuz-VERSION in bootDir that has a
// modulesDir/VERSION directory (the guest needs its virtio modules).
func findKernel(bootDir, modulesDir string) (path, version string, err error) {
	paths, err := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*"))
	if err != nil {
		return "", "", fmt.Errorf("find kernel: %w", err)
	}
	for _, p := range paths {
		v := strings.TrimPrefix(filepath.Base(p), "vmlinuz-")
		if st, err := os.Stat(filepath.Join(modulesDir, v)); err != nil || !st.IsDir() {
			continue
		}
		if version == "" || versionLess(version, v) {
			path, version = p, v
		}
	}
	if version == "" {
		return "", "", missingf("no kernel: no %s with modules in %s",
			filepath.Join(bootDir, "vmlinuz-*"), modulesDir)
	}
	return path, version, nil
}

// versionLess orders kernel versions naturally: runs of digits compare as
// numbers, so 6.1.0-10 sorts after 6.1.0-9.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na := strings.TrimLeft(a[:da], "0")
			nb := strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// extractVmlinux returns the ELF vmlinux compressed inside a bzImage,
// checking that it has the PVH note QEMU needs to boot it. Errors wrap
// errNoPVH when the image is fine but cannot be used this way.
func extractVmlinux(bz []byte) ([]byte, error) {
	payload, err := bzPayload(bz)
	if err != nil {
		return nil, err
	}
	// Except for gzip, the build appends the uncompressed size as 4
	// bytes, which the decompressors would take for trailing garbage.
	trailer := func() ([]byte, int) {
		n := len(payload) - 4
		return payload[:n], int(binary.LittleEndian.Uint32(payload[n:]))
	}
	var out []byte
	switch {
	case bytes.HasPrefix(payload, []byte{0x1F, 0x8B}):
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("kernel payload: %w", err)
		}
		zr.Multistream(false)
		if out, err = io.ReadAll(io.LimitReader(zr, maxVmlinux)); err != nil {
			return nil, fmt.Errorf("kernel payload: %w", err)
		}
	case bytes.HasPrefix(payload, xzMagic):
		data, size := trailer()
		if out, err = xzDecode(data, maxVmlinux); err != nil {
			return nil, fmt.Errorf("kernel payload: %w", err)
		}
		if len(out) != size {
			return nil, fmt.Errorf("kernel payload: decoded %d bytes, image says %d", len(out), size)
		}
	case bytes.HasPrefix(payload, []byte{0x28, 0xB5, 0x2F, 0xFD}):
		data, size := trailer()
		zr, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxVmlinux), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("kernel payload: %w", err)
		}
		defer zr.Close()
		if out, err = zr.DecodeAll(data, make([]byte, 0, min(size, maxVmlinux))); err != nil {
			return nil, fmt.Errorf("kernel payload: %w", err)
		}
		if len(out) != size {
			return nil, fmt.Errorf("kernel payload: decoded %d bytes, image says %d", len(out), size)
		}
	default:
		n := min(len(payload), 6)
		return nil, fmt.Errorf("%w: compression with magic %x is not supported", errNoPVH, payload[:n])
	}
	if err := checkPVH(out); err != nil {
		return nil, err
	}
	return out, nil
}

// bzPayload finds the compressed kernel in a bzImage through its setup
// header (boot protocol 2.08+: payload_offset and payload_length).
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("%w: not a bzImage (no HdrS setup header)", errNoPVH)
	}
	if v := binary.LittleEndian.Uint16(bz[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("%w: boot protocol %#x has no payload fields", errNoPVH, v)
	}
	setupSects := int(bz[0x1F1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24C:]))
	if n < 4 || off < 0 || off+n > len(bz) {
		return nil, fmt.Errorf("%w: payload %d+%d outside the %d-byte image", errNoPVH, off, n, len(bz))
	}
	return bz[off : off+n], nil
}

// checkPVH checks that vmlinux is an x86-64 ELF with the Xen PVH entry
// note (XEN_ELFNOTE_PHYS32_ENTRY), without which QEMU cannot boot it.
func checkPVH(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("%w: decompressed kernel: %w", errNoPVH, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: decompressed kernel is %v %v", errNoPVH, f.Class, f.Machine)
	}
	const xenElfnotePhys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("%w: ELF notes: %w", errNoPVH, err)
		}
		for len(notes) >= 12 {
			nameSize := int(binary.LittleEndian.Uint32(notes))
			descSize := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			name := notes[12:]
			if nameSize < 0 || nameSize > len(name) {
				break
			}
			if typ == xenElfnotePhys32Entry && string(name[:nameSize]) == "Xen\x00" {
				return nil
			}
			next := 12 + alignUp4(nameSize) + alignUp4(descSize)
			if descSize < 0 || next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return fmt.Errorf("%w: the kernel has no PVH entry note (CONFIG_PVH)", errNoPVH)
}
