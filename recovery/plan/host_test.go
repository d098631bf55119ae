package plan

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSys builds a /sys tree with the given class/net devices: "bridge"
// ones get a bridge/ directory, "tap" and "tun" ones a tun_flags file.
func fakeSys(t *testing.T, devs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, kind := range devs {
		dev := filepath.Join(root, "class", "net", name)
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch kind {
		case "bridge":
			err = os.Mkdir(filepath.Join(dev, "bridge"), 0o755)
		case "tap":
			err = os.WriteFile(filepath.Join(dev, "tun_flags"), []byte("0x1002\n"), 0o644)
		case "tun":
			err = os.WriteFile(filepath.Join(dev, "tun_flags"), []byte("0x1001\n"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCheckHost(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "bootdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	planYAML := `networks:
  lan: {bridge: br0}
  dmz: {tap: tap7}
  nat: {user: {}}
  off: {none: true}
groups:
  - vms:
      - vm: a
        kernel: vmlinuz
        initrd: initrd.img
      - vm: b
        kernel: bootdir
`
	planFile := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(planFile, []byte(planYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(planFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		devs map[string]string
		want []string // one substring per expected error, in order; PLAN is the plan file
	}{
		{"bridge and tap present", map[string]string{"br0": "bridge", "tap7": "tap", "eth0": ""}, nil},
		{"bridge missing", map[string]string{"tap7": "tap"},
			[]string{"PLAN:2: networks.lan.bridge: bridge br0 does not exist on this host: create it (ip link add br0 type bridge && ip link set br0 up)"}},
		{"bridge is not a bridge", map[string]string{"br0": "", "tap7": "tap"},
			[]string{"PLAN:2: networks.lan.bridge: br0 exists on this host but is not a bridge"}},
		{"tap missing", map[string]string{"br0": "bridge"},
			[]string{"PLAN:3: networks.dmz.tap: tap device tap7 does not exist on this host: create it (ip tuntap add dev tap7 mode tap"}},
		{"tap is a plain interface", map[string]string{"br0": "bridge", "tap7": ""},
			[]string{"PLAN:3: networks.dmz.tap: tap7 exists on this host but is not a tap device"}},
		{"tap is a tun", map[string]string{"br0": "bridge", "tap7": "tun"},
			[]string{"PLAN:3: networks.dmz.tap: tap7 is a tun device (layer 3), but QEMU NICs need a tap device"}},
	}
	fileErrs := []string{
		"PLAN:10: groups[0].vms[0].initrd: " + filepath.Join(dir, "initrd.img") + " does not exist on this host: copy the initrd here, or change initrd: to one that exists",
		"PLAN:12: groups[0].vms[1].kernel: " + filepath.Join(dir, "bootdir") + " is not a regular file",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := p.checkHost(context.Background(), fakeSys(t, tt.devs))
			want := append(tt.want, fileErrs...)
			if len(errs) != len(want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errors.Join(errs...))
			}
			for i, w := range want {
				w = strings.ReplaceAll(w, "PLAN", planFile)
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d:\n%v\nwant it to contain:\n%s", i, errs[i], w)
				}
				var fe *FieldError
				if !errors.As(errs[i], &fe) {
					t.Errorf("error %d is not a *FieldError: %#v", i, errs[i])
				}
			}
			if !errors.Is(errs[len(errs)-2], fs.ErrNotExist) {
				t.Errorf("missing initrd error does not wrap fs.ErrNotExist: %v", errs[len(errs)-2])
			}
		})
	}
}

func TestCheckHostUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(k, []byte("kernel"), 0o000); err != nil {
		t.Fatal(err)
	}
	p, err := Parse([]byte("groups: [{vms: [{vm: a, kernel: vmlinuz}]}]\n"), filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	errs := p.checkHost(context.Background(), fakeSys(t, nil))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "groups[0].vms[0].kernel: "+k+" cannot be read (permission denied)") {
		t.Errorf("errs = %v", errs)
	}
}

func TestCheckHostCanceled(t *testing.T) {
	p, err := Parse([]byte("networks: {lan: {bridge: br0}}\ngroups: [{vms: [{vm: a}]}]\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := p.checkHost(ctx, fakeSys(t, nil))
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Errorf("errs = %v, want only context.Canceled", errs)
	}
}

func TestCheckHostClean(t *testing.T) {
	p, err := Parse([]byte("networks: {nat: {user: {}}}\ngroups: [{vms: [{vm: a}]}]\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if errs := p.CheckHost(context.Background()); errs != nil {
		t.Errorf("CheckHost = %v, want nil for a plan with nothing on the host to check", errs)
	}
}
