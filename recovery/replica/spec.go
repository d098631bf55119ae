package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/drctl/drctl/repo"
)

// Spec is what to start: one VM with the hardware recorded at the primary,
// on disks and networks of the recovery site.
type Spec struct {
	VM string `json:"vm"`
	// Hardware is the recorded hardware. Machine is the versioned machine
	// type; one this QEMU lacks falls back to its family's alias ("q35"
	// for pc-q35-*, else "pc") with a warning. CPUModel "" means "max"
	// under TCG and "host" under KVM; "host" under TCG becomes "max" with
	// a warning. CPUs 0 means 1 and MemoryMiB 0 means 1024. Firmware is
	// "bios" (or "") or "uefi". Kernel, Initrd and Append boot the VM
	// directly. Extra is not applied (it may name the primary's paths):
	// put what should apply here in ExtraArgs.
	Hardware repo.Hardware `json:"hardware"`
	// Disks in boot order: disk i gets bootindex=i (i+1 with a Kernel,
	// whose loader QEMU gives bootindex 0).
	Disks []Disk `json:"disks"`
	// Networks maps each NIC's source network (repo.NIC.Network) to an
	// attachment here. A NIC whose network has no entry is an error.
	Networks map[string]Network `json:"networks,omitempty"`
	// Accel is "auto" (or ""), "kvm" or "tcg". Auto means KVM when
	// /dev/kvm opens read-write, unless $DRCTL_ACCEL says tcg or kvm.
	Accel string `json:"accel,omitempty"`
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string `json:"extra_args,omitempty"`
}

// Disk is one disk image of a replica.
type Disk struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Format is "qcow2" or "raw", never probed: a raw image whose guest
	// wrote a qcow2 header would otherwise be opened as qcow2, with a
	// backing file of the guest's choosing on the host.
	Format string `json:"format"`
	// Bus is "virtio" (or ""), "ide" or "scsi" (virtio-scsi).
	Bus string `json:"bus,omitempty"`
	// Serial is the guest-visible serial number; guests that name disks
	// by serial (/dev/disk/by-id) need the primary's.
	Serial string `json:"serial,omitempty"`
}

// Network kinds.
const (
	NetUser   = "user"
	NetTap    = "tap"
	NetBridge = "bridge"
	NetNone   = "none"
)

// Network is where NICs of one source network attach at the recovery site.
type Network struct {
	Kind   string `json:"kind"`             // user, tap, bridge or none
	Tap    string `json:"tap,omitempty"`    // tap: the host's tap interface
	Bridge string `json:"bridge,omitempty"` // bridge: the host bridge
	// Forwards are user-networking hostfwd rules, e.g.
	// "tcp:127.0.0.1:2222-:22".
	Forwards []string `json:"forwards,omitempty"`
	// Restrict isolates user networking from the host and the outside
	// (restrict=on); forwards still work.
	Restrict bool `json:"restrict,omitempty"`
}

// Defaults for a spec that leaves them out.
const (
	defaultCPUs      = 1
	defaultMemoryMiB = 1024
	defaultNICModel  = "virtio-net-pci"
)

// qemuNameRE is what names spliced into QEMU options must match (driver
// and machine names, device ids): a comma or '=' would add options.
var (
	qemuNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	qemuIDRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)
)

// checkSpec reports every problem of spec that can be found without QEMU,
// at once: during a failover an operator would rather fix the plan in
// one go.
func checkSpec(spec Spec) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	hw := spec.Hardware
	if !repo.NameRE.MatchString(spec.VM) {
		bad("vm name %q: use letters, digits, '.', '_' and '-'", spec.VM)
	}
	if hw.CPUs < 0 || hw.MemoryMiB < 0 {
		bad("negative cpus (%d) or memory (%d MiB)", hw.CPUs, hw.MemoryMiB)
	}
	if hw.Machine != "" && !qemuNameRE.MatchString(hw.Machine) {
		bad("machine type %q is not a QEMU machine name", hw.Machine)
	}
	switch hw.Firmware {
	case "", "bios", "uefi":
	default:
		bad("firmware %q: want bios or uefi", hw.Firmware)
	}
	for _, f := range []struct{ what, path string }{{"kernel", hw.Kernel}, {"initrd", hw.Initrd}} {
		if f.path != "" {
			if err := regularFile(f.path); err != nil {
				bad("direct-boot %s: %w", f.what, err)
			}
		}
	}
	if hw.Kernel == "" && (hw.Initrd != "" || hw.Append != "") {
		bad("initrd or kernel command line without a kernel")
	}
	if len(spec.Disks) == 0 && hw.Kernel == "" {
		bad("no disks and no kernel: nothing to boot")
	}
	for i, d := range spec.Disks {
		what := fmt.Sprintf("disk %d (%s)", i, d.Name)
		if d.Path == "" {
			bad("%s: no image path", what)
		} else if err := regularFile(d.Path); err != nil {
			bad("%s: %w", what, err)
		}
		if d.Format != "qcow2" && d.Format != "raw" {
			bad("%s: format %q: want qcow2 or raw (formats are never probed)", what, d.Format)
		}
		switch d.Bus {
		case "", "virtio", "ide", "scsi":
		default:
			bad("%s: bus %q: want virtio, ide or scsi", what, d.Bus)
		}
	}
	hostfwdNets := map[string]int{}
	for i, nic := range hw.NICs {
		what := nicName(i, nic)
		if nic.Model != "" && !qemuNameRE.MatchString(nic.Model) {
			bad("%s: model %q is not a QEMU device name", what, nic.Model)
		}
		if nic.MAC != "" {
			if hw, err := net.ParseMAC(nic.MAC); err != nil || len(hw) != 6 {
				bad("%s: MAC %q is not a 6-byte MAC address", what, nic.MAC)
			}
		}
		n, ok := spec.Networks[nic.Network]
		if !ok {
			bad("%s is on source network %q, which has no network at the recovery site: map it (kind user, tap, bridge or none)", what, nic.Network)
			continue
		}
		if err := checkNetwork(n); err != nil {
			bad("%s, network %q: %w", what, nic.Network, err)
		}
		if n.Kind == NetUser && len(n.Forwards) > 0 {
			hostfwdNets[nic.Network]++
		}
	}
	for name, count := range hostfwdNets {
		if count > 1 {
			bad("network %q has host forwards and %d NICs: each NIC gets its own user network, and the forwards' host ports can be bound once", name, count)
		}
	}
	return errors.Join(errs...)
}

func checkNetwork(n Network) error {
	switch n.Kind {
	case NetUser:
	case NetTap:
		if n.Tap == "" {
			return errors.New("kind tap needs a tap interface name")
		}
	case NetBridge:
		if n.Bridge == "" {
			return errors.New("kind bridge needs a bridge name")
		}
	case NetNone:
	default:
		return fmt.Errorf("kind %q: want user, tap, bridge or none", n.Kind)
	}
	if n.Kind != NetUser && (len(n.Forwards) > 0 || n.Restrict) {
		return fmt.Errorf("forwards and restrict apply to kind user, not %s", n.Kind)
	}
	return nil
}

func nicName(i int, nic repo.NIC) string {
	s := "NIC " + strconv.Itoa(i)
	if nic.ID != "" {
		s += " (" + nic.ID + ")"
	}
	if nic.MAC != "" {
		s += " mac " + nic.MAC
	}
	return s
}

// regularFile checks that path is a file QEMU can open.
func regularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

// plan is a checked spec with everything resolved that the command line
// needs.
type plan struct {
	spec    Spec
	files   files
	accel   string // kvm or tcg
	machine string
	cpu     string
	// ovmfCode and ovmfVars are the UEFI flash images; vars is the VM's
	// own copy in its state directory, "" when there is no template.
	ovmfCode, ovmfVars string
}

// qemuArgs is the command line. Paths in option strings are escaped or
// passed as JSON (-blockdev), since site and image paths may hold commas.
// It also returns the ids of the NICs whose link Start sets down.
func (p *plan) qemuArgs() (args, linkDown []string) {
	hw := p.spec.Hardware
	cpus, mem := hw.CPUs, hw.MemoryMiB
	if cpus == 0 {
		cpus = defaultCPUs
	}
	if mem == 0 {
		mem = defaultMemoryMiB
	}
	f := p.files
	args = []string{
		"-name", "guest=" + optEscape(p.spec.VM),
		"-machine", p.machine, "-accel", p.accel, "-cpu", p.cpu,
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none",
		// Timestamps, because qemu.log spans the replica's whole life.
		"-msg", "timestamp=on",
		"-pidfile", f.pid,
		"-chardev", "socket,id=qmp0,path=" + optEscape(f.qmp) + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
		// A file chardev truncates: serial.log holds this boot only, so a
		// health check cannot match the previous boot's output.
		"-chardev", "file,id=serial0,path=" + optEscape(f.serial),
		"-serial", "chardev:serial0",
		"-device", "virtio-serial-pci,id=vserial0",
		"-chardev", "socket,id=qga0,path=" + optEscape(f.qga) + ",server=on,wait=off",
		"-device", "virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
	}
	if p.ovmfCode != "" {
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optEscape(p.ovmfCode))
		if p.ovmfVars != "" {
			args = append(args, "-drive", "if=pflash,format=raw,unit=1,file="+optEscape(p.ovmfVars))
		}
	}
	if hw.Kernel != "" {
		args = append(args, "-kernel", absPath(hw.Kernel))
		if hw.Initrd != "" {
			args = append(args, "-initrd", absPath(hw.Initrd))
		}
		if hw.Append != "" {
			args = append(args, "-append", hw.Append)
		}
	}
	// With -kernel, QEMU's linuxboot option ROM holds bootindex 0
	// ("bootindex 0 has already been used" otherwise); the disks follow.
	firstBoot := 0
	if hw.Kernel != "" {
		firstBoot = 1
	}
	scsi := false
	for i, d := range p.spec.Disks {
		file, _ := json.Marshal(map[string]string{"driver": "file", "filename": absPath(d.Path), "node-name": fmt.Sprintf("file%d", i)})
		format, _ := json.Marshal(map[string]string{"driver": d.Format, "file": fmt.Sprintf("file%d", i), "node-name": fmt.Sprintf("disk%d", i)})
		args = append(args, "-blockdev", string(file), "-blockdev", string(format))
		var dev string
		switch d.Bus {
		case "", "virtio":
			dev = "virtio-blk-pci"
		case "ide":
			dev = "ide-hd"
		case "scsi":
			if !scsi {
				args = append(args, "-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			dev = "scsi-hd,bus=scsi0.0"
		}
		dev += fmt.Sprintf(",drive=disk%d,id=vdisk%d,bootindex=%d", i, i, firstBoot+i)
		if d.Serial != "" {
			dev += ",serial=" + optEscape(d.Serial)
		}
		args = append(args, "-device", dev)
	}
	used := map[string]bool{"vserial0": true, "scsi0": true}
	for i := range p.spec.Disks {
		used[fmt.Sprintf("vdisk%d", i)] = true
	}
	for i, nic := range hw.NICs {
		n := p.spec.Networks[nic.Network]
		netdev := fmt.Sprintf("net%d", i)
		var nd string
		switch n.Kind {
		case NetUser:
			nd = "user,id=" + netdev + ",restrict=" + onOff(n.Restrict)
			for _, fwd := range n.Forwards {
				nd += ",hostfwd=" + optEscape(fwd)
			}
		case NetTap:
			nd = "tap,id=" + netdev + ",ifname=" + optEscape(n.Tap) + ",script=no,downscript=no"
		case NetBridge:
			nd = "bridge,id=" + netdev + ",br=" + optEscape(n.Bridge)
		case NetNone:
			// A hub of its own per NIC: nothing else is on it, so no
			// frame leaves the NIC even before Start sets the link down.
			nd = fmt.Sprintf("hubport,id=%s,hubid=%d", netdev, 1000+i)
		}
		id := nic.ID
		if !qemuIDRE.MatchString(id) || used[id] {
			id = fmt.Sprintf("nic%d", i)
		}
		used[id] = true
		model := nic.Model
		if model == "" {
			model = defaultNICModel
		}
		dev := model + ",netdev=" + netdev + ",id=" + id
		if nic.MAC != "" {
			dev += ",mac=" + nic.MAC
		}
		args = append(args, "-netdev", nd, "-device", dev)
		if n.Kind == NetNone {
			linkDown = append(linkDown, id)
		}
	}
	return append(args, p.spec.ExtraArgs...), linkDown
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// optEscape quotes a value for QEMU's key=value option syntax.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// absPath makes paths independent of drctl's working directory, for
// replica.json and for whoever reads the command line later.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// resolveAccel picks the accelerator. An explicit kvm or tcg in the spec
// wins; for auto, $DRCTL_ACCEL (tcg or kvm) decides, else KVM when
// /dev/kvm is usable. /dev/kvm can exist yet not boot Linux (nested KVM
// with a crippled CPUID), which is what DRCTL_ACCEL=tcg is for.
func resolveAccel(want string, getenv func(string) string, kvmUsable func() bool) (string, error) {
	switch want {
	case "tcg", "kvm":
		return want, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("accelerator %q: want auto, kvm or tcg", want)
	}
	switch env := getenv("DRCTL_ACCEL"); env {
	case "tcg", "kvm":
		return env, nil
	case "", "auto":
	default:
		return "", fmt.Errorf("DRCTL_ACCEL=%q: want tcg or kvm", env)
	}
	if kvmUsable() {
		return "kvm", nil
	}
	return "tcg", nil
}

// kvmUsable reports whether /dev/kvm opens read-write, as QEMU needs.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// cpuModel picks -cpu. "host" cannot work under TCG, and a replica that
// boots on a different CPU model beats one that does not start.
func cpuModel(recorded, accel string) (cpu, warning string) {
	switch {
	case recorded == "" && accel == "kvm":
		return "host", ""
	case recorded == "":
		return "max", ""
	case accel == "tcg" && (recorded == "host" || strings.HasPrefix(recorded, "host,")):
		return "max", fmt.Sprintf("CPU model %q needs KVM; using \"max\" under TCG", recorded)
	}
	return recorded, ""
}

// parseMachines reads the machine names from "qemu -machine help".
func parseMachines(out string) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasSuffix(line, ":") {
			continue
		}
		m[fields[0]] = true
	}
	return m
}

// pickMachine returns the machine type to use and, on a fallback, why.
// A versioned type pins the guest-visible hardware; when this QEMU lacks
// it (usually: the primary runs a newer QEMU), the same chipset in this
// QEMU's version is the closest: pc-q35-* falls back to q35, everything
// else to pc.
func pickMachine(want string, have map[string]bool) (string, string) {
	if want == "" {
		return "pc", ""
	}
	if have[want] {
		return want, ""
	}
	alias := "pc"
	if strings.HasPrefix(want, "pc-q35-") && have["q35"] {
		alias = "q35"
	}
	return alias, fmt.Sprintf("machine type %q is not in this QEMU; using %q: the guest may see changed hardware", want, alias)
}
