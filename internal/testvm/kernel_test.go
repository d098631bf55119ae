package testvm

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{
		{"6.1.0-9-amd64", "6.1.0-10-amd64", true},
		{"6.1.0-10-amd64", "6.1.0-9-amd64", false},
		{"5.10.0-28-amd64", "6.1.0-1-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-56-amd64", false},
		{"6.1.0-56-amd64", "6.1.0-56-cloud-amd64", true},
		{"6.10.1", "6.9.12", false},
	} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// fakeVmlinux is a minimal x86-64 ELF whose only program header is a note
// segment, with or without the PVH entry note.
func fakeVmlinux(pvh bool) []byte {
	var note bytes.Buffer
	typ := uint32(18) // XEN_ELFNOTE_PHYS32_ENTRY
	if !pvh {
		typ = 17
	}
	_ = binary.Write(&note, binary.LittleEndian, [3]uint32{4, 4, typ})
	note.WriteString("Xen\x00")
	_ = binary.Write(&note, binary.LittleEndian, uint32(0x1000000))
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS], hdr.Ident[elf.EI_DATA], hdr.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	prog := elf.Prog64{Type: uint32(elf.PT_NOTE), Off: 120, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, hdr)
	_ = binary.Write(&b, binary.LittleEndian, prog)
	b.Write(note.Bytes())
	return b.Bytes()
}

// fakeBzImage wraps a compressed payload in a boot protocol 2.15 setup
// header, with one setup sector.
func fakeBzImage(payload []byte) []byte {
	bz := make([]byte, 1024+16)
	bz[0x1F1] = 1
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20F)
	binary.LittleEndian.PutUint32(bz[0x248:], 16)
	binary.LittleEndian.PutUint32(bz[0x24C:], uint32(len(payload)))
	return append(bz, payload...)
}

func TestExtractVmlinux(t *testing.T) {
	vmlinux := fakeVmlinux(true)
	withSize := func(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, uint32(len(vmlinux))) }

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(vmlinux)
	_ = zw.Close()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := withSize(enc.EncodeAll(vmlinux, nil))
	for name, payload := range map[string][]byte{"gzip": gz.Bytes(), "zstd": zst} {
		got, err := extractVmlinux(fakeBzImage(payload))
		if err != nil || !bytes.Equal(got, vmlinux) {
			t.Errorf("%s: extracted %d bytes, %v; want the %d-byte vmlinux", name, len(got), err, len(vmlinux))
		}
	}

	var noPVH bytes.Buffer
	zw = gzip.NewWriter(&noPVH)
	_, _ = zw.Write(fakeVmlinux(false))
	_ = zw.Close()
	for name, bz := range map[string][]byte{
		"no PVH note":  fakeBzImage(noPVH.Bytes()),
		"bzip2":        fakeBzImage([]byte("BZh91AY&SY0000")),
		"not a kernel": make([]byte, 4096),
	} {
		if _, err := extractVmlinux(bz); !errors.Is(err, errNoPVH) {
			t.Errorf("%s: err %v, want errNoPVH", name, err)
		}
	}
}

func TestMissingDependencies(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for name, cfg := range map[string]BuildConfig{
		"no kernel":       {CacheDir: dir, BootDir: dir},
		"no busybox":      {CacheDir: dir, Busybox: dir + "/busybox"},
		"dynamic busybox": {CacheDir: dir, Busybox: "/bin/ls"},
	} {
		_, err := Build(ctx, cfg)
		if !errors.Is(err, ErrMissing) || !bytes.Contains([]byte(err.Error()), []byte("run make test")) {
			t.Errorf("%s: err %v, want ErrMissing with the install hint", name, err)
		}
	}
}

// The host's kernel, the one the live tests boot, extracts to a PVH
// vmlinux; only a kernel built without CONFIG_PVH may fall back.
func TestBuildHostKernel(t *testing.T) {
	a, err := Build(t.Context(), BuildConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.PVH {
		bz, err := os.ReadFile(a.BzImage)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := extractVmlinux(bz); !errors.Is(err, errNoPVH) {
			t.Fatalf("booting the bzImage %s because extraction failed: %v", a.BzImage, err)
		}
		t.Logf("booting the bzImage: %s", a.NoPVHReason)
	}
	t.Logf("kernel %s (%s), initrd %s, modules %v", a.Kernel, a.KernelVersion, a.Initrd, a.Modules)
}
