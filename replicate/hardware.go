package replicate

import (
	"context"
	"strings"

	"github.com/drctl/drctl/internal/qmp"
	"github.com/drctl/drctl/repo"
)

// readHardware reads the VM's virtual hardware from QEMU for the manifest,
// so the recovery side can start a VM the guest recognises: same machine
// type, CPU model and count, memory, NIC models and MACs (a new MAC makes
// many guests rename their interface and lose their network config), and
// the direct-boot kernel when the VM has one. Every value is read, none is
// assumed; what QEMU does not answer is left empty, and the recovery side
// applies its defaults and the plan's overrides.
func readHardware(ctx context.Context, c *qmp.Client, blocks []qmp.BlockInfo) *repo.Hardware {
	hw := &repo.Hardware{}
	var typ string
	if c.QOMGet(ctx, "/machine", "type", &typ) == nil {
		hw.Machine = strings.TrimSuffix(typ, "-machine")
	}
	if cpus, err := c.QueryCPUsFast(ctx); err == nil && len(cpus) > 0 {
		hw.CPUs = len(cpus)
		var cpuType string
		if c.QOMGet(ctx, cpus[0].QOMPath, "type", &cpuType) == nil {
			hw.CPUModel = strings.TrimSuffix(cpuType, "-"+cpus[0].Target+"-cpu")
		}
	}
	if mem, err := c.QueryMemorySizeSummary(ctx); err == nil {
		hw.MemoryMiB = int(mem.BaseMemory >> 20)
	}
	for prop, dst := range map[string]*string{"kernel": &hw.Kernel, "initrd": &hw.Initrd, "append": &hw.Append} {
		_ = c.QOMGet(ctx, "/machine", prop, dst)
	}
	var fw string
	_ = c.QOMGet(ctx, "/machine", "firmware", &fw)
	hw.Firmware = firmwareKind(fw, blocks)
	hw.NICs = readNICs(ctx, c)
	return hw
}

// firmwareKind tells UEFI from BIOS: a UEFI VM on QEMU loads OVMF either
// as flash drives (pflash0/1) or as its -bios image.
func firmwareKind(bios string, blocks []qmp.BlockInfo) string {
	for _, b := range blocks {
		if strings.HasPrefix(b.Device, "pflash") || strings.Contains(b.QDev, "system.flash") {
			return "uefi"
		}
	}
	lower := strings.ToLower(bios)
	if strings.Contains(lower, "ovmf") || strings.Contains(lower, "edk2") || strings.Contains(lower, "uefi") {
		return "uefi"
	}
	return "bios"
}

// readNICs finds the network cards among the user-created devices: the
// ones with a "mac" and a "netdev" property. query-rx-filter would miss
// every model but virtio-net.
func readNICs(ctx context.Context, c *qmp.Client) []repo.NIC {
	var nics []repo.NIC
	for _, dir := range []string{"/machine/peripheral", "/machine/peripheral-anon"} {
		children, err := c.QOMList(ctx, dir)
		if err != nil {
			continue
		}
		for _, p := range children {
			model := p.ChildType()
			if model == "" {
				continue
			}
			path := dir + "/" + p.Name
			var mac, netdev string
			if c.QOMGet(ctx, path, "mac", &mac) != nil || c.QOMGet(ctx, path, "netdev", &netdev) != nil {
				continue
			}
			nic := repo.NIC{MAC: mac, Model: model, Network: netdev}
			if dir == "/machine/peripheral" {
				nic.ID = p.Name
			}
			nics = append(nics, nic)
		}
	}
	return nics
}

// mergeHardware lays the configured values over what QEMU reported: the
// config knows what QMP cannot tell, e.g. the firmware of a VM whose
// OVMF is loaded some other way.
func mergeHardware(read, conf *repo.Hardware) *repo.Hardware {
	if conf == nil {
		return read
	}
	if read == nil {
		read = &repo.Hardware{}
	}
	out := *read
	if conf.CPUs > 0 {
		out.CPUs = conf.CPUs
	}
	if conf.MemoryMiB > 0 {
		out.MemoryMiB = conf.MemoryMiB
	}
	for _, f := range []struct{ dst, src *string }{
		{&out.Firmware, &conf.Firmware}, {&out.Machine, &conf.Machine}, {&out.CPUModel, &conf.CPUModel},
		{&out.Kernel, &conf.Kernel}, {&out.Initrd, &conf.Initrd}, {&out.Append, &conf.Append},
	} {
		if *f.src != "" {
			*f.dst = *f.src
		}
	}
	if len(conf.NICs) > 0 {
		out.NICs = conf.NICs
	}
	out.Extra = append(out.Extra, conf.Extra...)
	return &out
}
