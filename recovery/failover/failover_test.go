package failover

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/recovery/plan"
	"github.com/drctl/drctl/repo"
)

func testPlan(t *testing.T, body string) *plan.Plan {
	t.Helper()
	p, err := plan.Parse([]byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildSpec(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap := &repo.Snapshot{ID: "0123456789abcdef", VM: "web",
		Hardware: &repo.Hardware{CPUs: 4, MemoryMiB: 4096, Machine: "pc-i440fx-7.2", Kernel: "/primary/only/vmlinuz",
			NICs: []repo.NIC{{MAC: "52:54:00:00:00:01", Model: "e1000", Network: "lan"}}},
		Disks: []repo.Disk{{Name: "root", Bus: "virtio", Serial: "s1"}, {Name: "data", Bus: "ide"}},
	}
	cases := []struct {
		name, plan string
		check      func(t *testing.T, err error, cpus, mem int, kern string)
	}{
		{"overrides", "name: p\nnetworks: {nat: {user: {}}}\ngroups: [{name: g, vms: [{vm: web, cpus: 1, memory_mib: 512, kernel: " + kernel + ", networks: {lan: nat}}]}]\n",
			func(t *testing.T, err error, cpus, mem int, kern string) {
				if err != nil || cpus != 1 || mem != 512 || kern != kernel {
					t.Fatalf("got %v, %d CPUs, %d MiB, kernel %s", err, cpus, mem, kern)
				}
			}},
		{"kernel missing here", "name: p\nnetworks: {nat: {user: {}}}\ngroups: [{name: g, vms: [{vm: web, networks: {lan: nat}}]}]\n",
			func(t *testing.T, err error, _, _ int, _ string) {
				if err == nil || !strings.Contains(err.Error(), "/primary/only/vmlinuz, which this site does not have") {
					t.Fatalf("got %v", err)
				}
			}},
		{"nic not mapped", "name: p\nnetworks: {nat: {user: {}}}\ngroups: [{name: g, vms: [{vm: web, kernel: " + kernel + "}]}]\n",
			func(t *testing.T, err error, _, _ int, _ string) {
				if err == nil || !strings.Contains(err.Error(), `source network "lan"`) {
					t.Fatalf("got %v", err)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testPlan(t, c.plan)
			spec, err := buildSpec(p, p.VMs()[0], snap, "/state")
			c.check(t, err, spec.Hardware.CPUs, spec.Hardware.MemoryMiB, spec.Hardware.Kernel)
			if err == nil {
				if len(spec.Disks) != 2 || spec.Disks[0].Path != "/state/disks/web/root.qcow2" || spec.Disks[0].Serial != "s1" || spec.Disks[1].Bus != "ide" {
					t.Fatalf("disks: %+v", spec.Disks)
				}
				if n := spec.Networks["lan"]; n.Kind != plan.NetUser {
					t.Fatalf("networks: %+v", spec.Networks)
				}
			}
		})
	}
	// The recorded hardware must not change when a plan overrides it.
	if snap.Hardware.CPUs != 4 {
		t.Fatal("buildSpec changed the snapshot's hardware")
	}
}

func TestRunStateAndLock(t *testing.T) {
	dir := t.TempDir()
	if st, resumed, err := loadRunState(dir, "prod"); err != nil || resumed || st != nil {
		t.Fatalf("fresh dir: %v %v %v", st, resumed, err)
	}
	want := &runState{Run: "r1", Plan: "prod", Declared: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC), Pins: map[string]string{"web": "abc"}}
	if err := saveRunState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, resumed, err := loadRunState(dir, "prod")
	if err != nil || !resumed || got.Run != "r1" || got.Pins["web"] != "abc" || !got.Declared.Equal(want.Declared) {
		t.Fatalf("reload: %+v %v %v", got, resumed, err)
	}
	if err := os.WriteFile(runStatePath(dir, "prod"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadRunState(dir, "prod"); err == nil || !strings.Contains(err.Error(), "is damaged") {
		t.Fatalf("damaged state: %v", err)
	}

	unlock, err := lockSite(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockSite(dir); err == nil || !strings.Contains(err.Error(), "another drctl failover is running") ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := lockSite(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
