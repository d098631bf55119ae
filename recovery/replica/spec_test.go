package replica

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/drctl/drctl/repo"
)

// touch creates an empty file.
func touch(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestQEMUArgs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a,b") // a comma QEMU must not take as a separator
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		VM: "web1",
		Hardware: repo.Hardware{CPUs: 2, MemoryMiB: 512, Kernel: touch(t, filepath.Join(dir, "vmlinuz")), Append: "console=ttyS0 root=/dev/vda",
			NICs: []repo.NIC{
				{ID: "net0", MAC: "52:54:00:00:00:01", Model: "e1000", Network: "lan"},
				{MAC: "52:54:00:00:00:02", Network: "dmz"},
				{ID: "vdisk0", MAC: "52:54:00:00:00:03", Network: "tap"},
				{MAC: "52:54:00:00:00:04", Network: "br"},
			}},
		Disks: []Disk{
			{Name: "root", Path: touch(t, filepath.Join(dir, "root.qcow2")), Format: "qcow2", Serial: "ser,1"},
			{Name: "data", Path: touch(t, filepath.Join(dir, "data.raw")), Format: "raw", Bus: "ide"},
			{Name: "s1", Path: touch(t, filepath.Join(dir, "s1.raw")), Format: "raw", Bus: "scsi"},
			{Name: "s2", Path: touch(t, filepath.Join(dir, "s2.raw")), Format: "raw", Bus: "scsi"},
		},
		Networks: map[string]Network{
			"lan": {Kind: NetUser, Forwards: []string{"tcp:127.0.0.1:2222-:22"}, Restrict: true},
			"dmz": {Kind: NetNone},
			"tap": {Kind: NetTap, Tap: "tap7"},
			"br":  {Kind: NetBridge, Bridge: "br0"},
		},
		ExtraArgs: []string{"-S"},
	}
	if err := checkSpec(spec); err != nil {
		t.Fatal(err)
	}
	p := &plan{spec: spec, files: filesOf(filepath.Join(dir, "web1")), accel: "tcg", machine: "pc-i440fx-7.2", cpu: "max"}
	args, down := p.qemuArgs()
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-name guest=web1 -machine pc-i440fx-7.2 -accel tcg -cpu max -smp 2 -m 512 -nodefaults -no-user-config -display none",
		"-pidfile " + dir + "/web1/qemu.pid",
		"-chardev socket,id=qmp0,path=" + strings.ReplaceAll(dir, ",", ",,") + "/web1/qmp.sock,server=on,wait=off -mon chardev=qmp0,mode=control",
		"-chardev file,id=serial0,path=" + strings.ReplaceAll(dir, ",", ",,") + "/web1/serial.log -serial chardev:serial0",
		"-device virtio-serial-pci,id=vserial0 -chardev socket,id=qga0,path=" + strings.ReplaceAll(dir, ",", ",,") + "/web1/qga.sock,server=on,wait=off",
		"-device virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
		"-kernel " + dir + "/vmlinuz -append console=ttyS0 root=/dev/vda -blockdev",
		`-blockdev {"driver":"file","filename":"` + dir + `/root.qcow2","node-name":"file0"} -blockdev {"driver":"qcow2","file":"file0","node-name":"disk0"}`,
		"-device virtio-blk-pci,drive=disk0,id=vdisk0,bootindex=1,serial=ser,,1",
		`{"driver":"raw","file":"file1","node-name":"disk1"} -device ide-hd,drive=disk1,id=vdisk1,bootindex=2 `,
		"-device virtio-scsi-pci,id=scsi0 -device scsi-hd,bus=scsi0.0,drive=disk2,id=vdisk2,bootindex=3 ",
		"-device scsi-hd,bus=scsi0.0,drive=disk3,id=vdisk3,bootindex=4 ",
		"-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22 -device e1000,netdev=net0,id=net0,mac=52:54:00:00:00:01",
		"-netdev hubport,id=net1,hubid=1001 -device virtio-net-pci,netdev=net1,id=nic1,mac=52:54:00:00:00:02",
		// A recorded id that clashes with a disk's is replaced.
		"-netdev tap,id=net2,ifname=tap7,script=no,downscript=no -device virtio-net-pci,netdev=net2,id=nic2,mac=52:54:00:00:00:03",
		"-netdev bridge,id=net3,br=br0 -device virtio-net-pci,netdev=net3,id=nic3,mac=52:54:00:00:00:04 -S",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("command line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "-initrd") || strings.Count(line, "virtio-scsi-pci") != 1 {
		t.Errorf("command line:\n%s", line)
	}
	if !slices.Equal(down, []string{"nic1"}) {
		t.Errorf("links set down: %v", down)
	}
}

func TestCheckSpec(t *testing.T) {
	dir := t.TempDir()
	img := touch(t, filepath.Join(dir, "d.qcow2"))
	ok := Spec{VM: "vm1", Disks: []Disk{{Name: "d", Path: img, Format: "qcow2"}},
		Hardware: repo.Hardware{NICs: []repo.NIC{{ID: "n0", MAC: "52:54:00:12:34:56", Network: "lan"}}},
		Networks: map[string]Network{"lan": {Kind: NetUser}}}
	if err := checkSpec(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want []string
	}{
		{"unmapped network", func(s *Spec) { s.Networks = nil }, []string{"NIC 0 (n0) mac 52:54:00:12:34:56", `source network "lan"`}},
		{"missing kernel", func(s *Spec) { s.Hardware.Kernel = filepath.Join(dir, "nope") }, []string{"direct-boot kernel", "nope", "no such file"}},
		{"missing initrd", func(s *Spec) { s.Hardware.Kernel, s.Hardware.Initrd = img, filepath.Join(dir, "nope") }, []string{"direct-boot initrd"}},
		{"missing disk", func(s *Spec) { s.Disks[0].Path = filepath.Join(dir, "gone.qcow2") }, []string{"disk 0 (d)", "gone.qcow2"}},
		{"format", func(s *Spec) { s.Disks[0].Format = "" }, []string{`format "": want qcow2 or raw`}},
		{"bus", func(s *Spec) { s.Disks[0].Bus = "nvme" }, []string{`bus "nvme"`}},
		{"name", func(s *Spec) { s.VM = "../x" }, []string{`vm name "../x"`}},
		{"machine", func(s *Spec) { s.Hardware.Machine = "pc,accel=kvm" }, []string{"machine type"}},
		{"model", func(s *Spec) { s.Hardware.NICs[0].Model = "e1000,romfile=/x" }, []string{"model"}},
		{"mac", func(s *Spec) { s.Hardware.NICs[0].MAC = "52:54" }, []string{"MAC"}},
		{"firmware", func(s *Spec) { s.Hardware.Firmware = "coreboot" }, []string{"firmware"}},
		{"tap", func(s *Spec) { s.Networks["lan"] = Network{Kind: NetTap} }, []string{"tap interface name"}},
		{"bridge", func(s *Spec) { s.Networks["lan"] = Network{Kind: NetBridge} }, []string{"bridge name"}},
		{"kind", func(s *Spec) { s.Networks["lan"] = Network{Kind: "vde"} }, []string{`kind "vde"`}},
		{"forwards on none", func(s *Spec) { s.Networks["lan"] = Network{Kind: NetNone, Forwards: []string{"tcp::1-:2"}} }, []string{"forwards"}},
		{"two NICs, one hostfwd", func(s *Spec) {
			s.Networks["lan"] = Network{Kind: NetUser, Forwards: []string{"tcp::1-:2"}}
			s.Hardware.NICs = append(s.Hardware.NICs, repo.NIC{Network: "lan"})
		}, []string{"2 NICs"}},
		{"nothing to boot", func(s *Spec) { s.Disks = nil }, []string{"nothing to boot"}},
		{"everything at once", func(s *Spec) { s.Networks = nil; s.Disks[0].Format = "vmdk" }, []string{"source network", "vmdk"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Disks = slices.Clone(ok.Disks)
			s.Hardware.NICs = slices.Clone(ok.Hardware.NICs)
			s.Networks = map[string]Network{"lan": ok.Networks["lan"]}
			tc.edit(&s)
			err := checkSpec(s)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestResolveAccel(t *testing.T) {
	for _, tc := range []struct {
		want, env string
		kvm       bool
		got       string
	}{
		{"tcg", "kvm", true, "tcg"},
		{"kvm", "tcg", false, "kvm"},
		{"auto", "", true, "kvm"},
		{"", "", false, "tcg"},
		{"auto", "tcg", true, "tcg"},
		{"auto", "kvm", false, "kvm"},
		{"", "auto", true, "kvm"},
		{"auto", "hvf", true, ""},
		{"xen", "", true, ""},
	} {
		got, err := resolveAccel(tc.want, func(string) string { return tc.env }, func() bool { return tc.kvm })
		if got != tc.got || (err != nil) != (tc.got == "") {
			t.Errorf("accel %q env %q kvm %v: %q, %v; want %q", tc.want, tc.env, tc.kvm, got, err, tc.got)
		}
	}
}

func TestCPUAndMachine(t *testing.T) {
	for _, tc := range []struct{ rec, accel, cpu string }{
		{"", "tcg", "max"}, {"", "kvm", "host"}, {"host", "tcg", "max"}, {"host", "kvm", "host"}, {"Skylake-Server", "tcg", "Skylake-Server"},
	} {
		if got, _ := cpuModel(tc.rec, tc.accel); got != tc.cpu {
			t.Errorf("cpu %q under %s: %q, want %q", tc.rec, tc.accel, got, tc.cpu)
		}
	}
	have := parseMachines("Supported machines are:\nmicrovm              microvm (i386)\npc                   Standard PC (alias of pc-i440fx-7.2)\n" +
		"pc-i440fx-7.2        Standard PC (default)\nq35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\npc-q35-7.2           Standard PC\nnone                 empty machine\n")
	if len(have) != 6 || !have["pc-q35-7.2"] || have["Supported"] {
		t.Fatalf("machines %v", have)
	}
	for _, tc := range []struct{ want, got string }{
		{"", "pc"}, {"pc-i440fx-7.2", "pc-i440fx-7.2"}, {"pc-i440fx-9.1", "pc"}, {"pc-q35-9.1", "q35"}, {"pc-q35-7.2", "pc-q35-7.2"}, {"virt", "pc"},
	} {
		got, warning := pickMachine(tc.want, have)
		if got != tc.got || (warning != "") != (tc.want != tc.got && tc.want != "") {
			t.Errorf("machine %q: %q (%q), want %q", tc.want, got, warning, tc.got)
		}
	}
}

func TestStartRefusesBeforeAnything(t *testing.T) {
	site := &Site{Dir: filepath.Join(t.TempDir(), "site"), QEMU: "/nonexistent/qemu"}
	img := touch(t, filepath.Join(t.TempDir(), "d.raw"))
	spec := Spec{VM: "vm1", Accel: "tcg", Disks: []Disk{{Path: img, Format: "raw"}},
		Hardware: repo.Hardware{Kernel: filepath.Join(t.TempDir(), "missing-vmlinuz")}}
	_, err := site.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "start replica vm1: direct-boot kernel") || !strings.Contains(err.Error(), "missing-vmlinuz") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(site.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("site directory created: %v", err)
	}

	long := &Site{Dir: filepath.Join(t.TempDir(), strings.Repeat("d", 100)), QEMU: "/nonexistent/qemu"}
	spec.Hardware.Kernel = ""
	_, err = long.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "unix socket limit") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(long.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("site directory created: %v", err)
	}

	spec.Hardware.Firmware = "uefi"
	site.OVMFCode = filepath.Join(t.TempDir(), "OVMF_CODE.fd")
	site.machines = map[string]bool{"pc": true} // no QEMU needed
	_, err = site.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "needs OVMF") {
		t.Fatalf("error %v", err)
	}
}

func TestStaleStateDir(t *testing.T) {
	ctx := context.Background()
	site := NewSite(t.TempDir(), nil)
	if _, err := site.Find(ctx, "vm1"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("find in an empty site: %v", err)
	}
	if l, err := site.List(ctx); err != nil || len(l) != 0 {
		t.Fatalf("list of an empty site: %v, %v", l, err)
	}
	// What a QEMU killed with SIGKILL leaves: an unlocked pidfile naming
	// a pid (here a live one, this test's), a dead socket, the record.
	f := filesOf(filepath.Join(site.Dir, "vm1"))
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.pid, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	touch(t, f.qmp)
	if err := writeRecord(f.record, record{VM: "vm1", PID: 1, Args: []string{"-S"}, Spec: Spec{VM: "vm1"}}); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(site.Dir, "not-a-vm")) // a file, ignored
	if err := os.Mkdir(filepath.Join(site.Dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Find(ctx, "vm1"); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "vm1") {
		t.Fatalf("find of a stale replica: %v", err)
	}
	l, err := site.List(ctx)
	if err != nil || len(l) != 1 || l[0].VM != "vm1" || l[0].Running || l[0].PID != 1 || l[0].Spec == nil {
		t.Fatalf("list: %+v, %v", l, err)
	}
	if err := l[0].Stop(ctx, 0); err != nil {
		t.Fatalf("stop of a stopped replica: %v", err)
	}
	if _, err := site.Find(ctx, "../etc"); err == nil || errors.Is(err, ErrNotRunning) {
		t.Fatalf("find of a bad name: %v", err)
	}
}
