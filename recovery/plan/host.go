package plan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// iffTap is IFF_TAP from linux/if_tun.h, as shown in
// /sys/class/net/<dev>/tun_flags.
const iffTap = 0x0002

// CheckHost checks that this host has what the plan refers to: every
// bridge (a directory /sys/class/net/<br>/bridge), every tap device
// (/sys/class/net/<tap> with tun_flags saying tap), and every kernel and
// initrd override (a readable file). It returns one *FieldError per
// problem, naming the plan key and what to do, or nil. It checks all
// networks defined, used or not, so a drill finds a stale plan early.
func (p *Plan) CheckHost(ctx context.Context) []error {
	return p.checkHost(ctx, "/sys")
}

// checkHost is CheckHost with the sysfs root given, for tests.
func (p *Plan) checkHost(ctx context.Context, sysRoot string) []error {
	var errs []error
	for _, name := range yamlstrict.SortedKeys(p.Networks) {
		if err := ctx.Err(); err != nil {
			return append(errs, fmt.Errorf("check host: %w", err))
		}
		n := p.Networks[name]
		key := "networks." + name
		switch n.Kind {
		case NetBridge:
			if err := p.checkBridge(sysRoot, yamlstrict.ChildKey(key, NetBridge), n.Bridge); err != nil {
				errs = append(errs, err)
			}
		case NetTap:
			if err := p.checkTap(sysRoot, yamlstrict.ChildKey(key, NetTap), n.Tap); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, v := range p.VMs() {
		if err := ctx.Err(); err != nil {
			return append(errs, fmt.Errorf("check host: %w", err))
		}
		for _, f := range []struct{ field, path string }{{"kernel", v.Kernel}, {"initrd", v.Initrd}} {
			if f.path == "" {
				continue
			}
			if err := p.checkFile(v.keyOf(f.field), f.field, f.path); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

func (p *Plan) checkBridge(sysRoot, key, br string) error {
	dev := filepath.Join(sysRoot, "class", "net", br)
	if _, err := os.Stat(dev); err != nil {
		return p.fieldError(key, err, "bridge %s does not exist on this host: create it (ip link add %s type bridge && ip link set %s up) or name an existing bridge", br, br, br)
	}
	if fi, err := os.Stat(filepath.Join(dev, "bridge")); err != nil || !fi.IsDir() {
		return p.fieldError(key, err, "%s exists on this host but is not a bridge: name a bridge (ip -d link show type bridge lists them), or use tap: %s if it is a tap device", br, br)
	}
	return nil
}

func (p *Plan) checkTap(sysRoot, key, tap string) error {
	dev := filepath.Join(sysRoot, "class", "net", tap)
	create := fmt.Sprintf("ip tuntap add dev %s mode tap user <user running drctl> && ip link set %s up", tap, tap)
	if _, err := os.Stat(dev); err != nil {
		return p.fieldError(key, err, "tap device %s does not exist on this host: create it (%s) or name an existing one", tap, create)
	}
	raw, err := os.ReadFile(filepath.Join(dev, "tun_flags"))
	if errors.Is(err, fs.ErrNotExist) {
		return p.fieldError(key, err, "%s exists on this host but is not a tap device: name a tap device, or use bridge: %s if it is a bridge", tap, tap)
	}
	if err != nil {
		return p.fieldError(key, err, "cannot read the flags of tap device %s (%v): check that drctl may read /sys", tap, err)
	}
	flags, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 0, 32)
	if err == nil && flags&iffTap == 0 {
		return p.fieldError(key, nil, "%s is a tun device (layer 3), but QEMU NICs need a tap device: recreate it (ip tuntap del dev %s mode tun && %s)", tap, tap, create)
	}
	return nil
}

func (p *Plan) checkFile(key, what, path string) error {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p.fieldError(key, err, "%s does not exist on this host: copy the %s here, or change %s: to one that exists", path, what, what)
	case errors.Is(err, fs.ErrPermission):
		return p.fieldError(key, err, "%s cannot be read (permission denied): make it readable by the user running drctl", path)
	case err != nil:
		return p.fieldError(key, err, "cannot open %s: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return p.fieldError(key, err, "cannot stat %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return p.fieldError(key, nil, "%s is not a regular file: name the %s file itself", path, what)
	}
	return nil
}
