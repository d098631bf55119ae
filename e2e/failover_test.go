package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/testvm"
)

// failoverPlan is a 2-VM plan: web boots after db is healthy. Each
// replica's health check reads its first disk back on the serial console
// (the test guest prints the first 64 bytes of each disk at boot).
func failoverPlan(dbByte, webByte byte) string {
	return fmt.Sprintf(`name: prod
accel: tcg
lease: 10m
networks:
  isolated: {user: {restrict: true}}
groups:
  - name: data
    vms:
      - vm: db
        networks: {n0: isolated}
        health:
          - serial: 'DRTEST: DATA disk=0 dev=\S+ offset=0 hex=(%02x){64}'
            timeout: 3m
  - name: front
    vms:
      - vm: web
        networks: {n0: isolated}
        health:
          - serial: 'DRTEST: DATA disk=0 dev=\S+ offset=0 hex=(%02x){64}'
            timeout: 3m
`, dbByte, webByte)
}

// replicaQEMUs lists the QEMU processes whose command line mentions dir:
// the replicas started from a site's state directory.
func replicaQEMUs(t *testing.T, dir string) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-af", "qemu-system").Output()
	var found []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) {
			found = append(found, l)
		}
	}
	return found
}

// waitReplicaStarted waits until a replica QEMU runs under dir, started
// by cmd (a failover or a drill); it kills cmd and fails the test, with
// cmd's output, if none starts within two minutes.
func waitReplicaStarted(t *testing.T, cmd *exec.Cmd, dir string, output func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for len(replicaQEMUs(t, dir)) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no replica started:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killReplicas kills every replica QEMU started under dir (they outlive
// drctl by design).
func killReplicas(dir string) {
	out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+regexp.QuoteMeta(dir)).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		fmt.Sscan(f, &pid)
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

type failoverJSON struct {
	Run string `json:"run"`
	OK  bool   `json:"ok"`
	VMs []struct {
		VM             string  `json:"vm"`
		Status         string  `json:"status"`
		Snapshot       string  `json:"snapshot"`
		AlreadyRunning bool    `json:"already_running"`
		RPOSeconds     float64 `json:"rpo_seconds"`
		RTOSeconds     float64 `json:"rto_seconds"`
		RestoreSeconds float64 `json:"restore_seconds"`
		BootSeconds    float64 `json:"boot_to_healthy_seconds"`
	} `json:"vms"`
}

func parseFailover(t *testing.T, r result) failoverJSON {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var f failoverJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &f); err != nil {
		t.Fatalf("parse failover result: %v\n%s", err, r)
	}
	return f
}

// TestFailover: two running VMs replicate to S3; the primary is declared
// lost at a recovery site that shares only the bucket. A fresh heartbeat
// blocks the failover; ten forced failovers race and exactly one boots
// the VMs, whose health checks read back the data replicated before the
// loss (and not what was written after); the primary's next replicate
// refuses to commit; an interrupted failover resumes without a second
// copy of any VM.
func TestFailover(t *testing.T) {
	prim := newEnv(t)
	prim.set("DRCTL_SITE=primary")
	repo := prim.s3Repo()
	prim.ok("init", "-r", repo)

	vms := map[string]*testvm.VM{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"db", "web"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := testvm.Start(t.Context(), t, testvm.Options{Mode: testvm.ModeIdle, Net: true,
				Disks: []testvm.Disk{{Size: 32 << 20}, {Size: 16 << 20}}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			vms[name] = vm
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	hmpWrite(t, vms["db"], 0, 0, 1<<20, 0xdb)
	hmpWrite(t, vms["web"], 0, 0, 1<<20, 0x3e)
	for name, vm := range vms {
		prim.ok("replicate", "-r", repo, "--vm", name, "--qmp", vm.QMPSocket())
	}
	// Written after the last replication: lost with the primary.
	hmpWrite(t, vms["db"], 0, 0, 4096, 0x99)

	dr := newEnv(t)
	planFile := filepath.Join(dr.dir, "prod.yaml")
	if err := os.WriteFile(planFile, []byte(failoverPlan(0xdb, 0x3e)), 0o644); err != nil {
		t.Fatal(err)
	}
	dr.ok("plan", "check", "-r", repo, "--plan", planFile, "--site", "dr")

	// The primary replicated seconds ago: its heartbeat blocks a failover.
	dr.fails(17, "primary looks alive", "failover", "-r", repo, "--plan", planFile, "--site", "dr", "--state-dir", filepath.Join(dr.dir, "dr"))
	if got := replicaQEMUs(t, dr.dir); len(got) != 0 {
		t.Fatalf("a refused failover started QEMUs: %v", got)
	}

	// Ten forced failovers from ten sites at once: one wins.
	const n = 10
	results := make([]result, n)
	for i := range n {
		t.Cleanup(func() { killReplicas(filepath.Join(dr.dir, fmt.Sprintf("site%d", i))) })
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = dr.run("failover", "-r", repo, "--plan", planFile, "--force", "--json",
				"--site", fmt.Sprintf("site%d", i), "--state-dir", filepath.Join(dr.dir, fmt.Sprintf("site%d", i)))
		}()
	}
	wg.Wait()
	winner := -1
	for i, r := range results {
		switch r.code {
		case 0:
			if winner >= 0 {
				t.Fatalf("failovers %d and %d both succeeded:\n%s\n%s", winner, i, results[winner], r)
			}
			winner = i
		case 16:
		default:
			t.Fatalf("failover %d: want exit 0 or 16, got %s", i, r)
		}
	}
	if winner < 0 {
		t.Fatalf("no failover won: %s", results[0])
	}
	winSite := fmt.Sprintf("site%d", winner)
	for i, r := range results {
		if i != winner && !strings.Contains(r.stderr, "owned by site "+winSite) {
			t.Fatalf("loser %d does not name the winner %s: %s", i, winSite, r)
		}
	}
	res := parseFailover(t, results[winner])
	if !res.OK || len(res.VMs) != 2 || res.VMs[0].VM != "db" || res.VMs[1].VM != "web" {
		t.Fatalf("winner's result: %+v", res)
	}
	for _, v := range res.VMs {
		if v.Status != "healthy" || v.RTOSeconds <= 0 || v.RPOSeconds <= 0 || v.RestoreSeconds <= 0 || v.BootSeconds <= 0 {
			t.Fatalf("vm %s: %+v", v.VM, v)
		}
		t.Logf("vm %s: RPO %.1fs, restore %.2fs, boot to healthy %.1fs, RTO %.1fs", v.VM, v.RPOSeconds, v.RestoreSeconds, v.BootSeconds, v.RTOSeconds)
	}
	winDir := filepath.Join(dr.dir, winSite)
	if got := replicaQEMUs(t, dr.dir); len(got) != 2 {
		t.Fatalf("%d replica QEMUs run after the race, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	// The replica of db has the replicated data, not the later write.
	serial, err := os.ReadFile(filepath.Join(winDir, "replicas", "db", "serial.log"))
	if err != nil || !regexp.MustCompile(`hex=(db){64}`).Match(serial) {
		t.Fatalf("db replica's console: %v\n%s", err, serial)
	}

	// The primary has lost the VMs: it may not commit any more.
	prim.fails(16, "was failed over to site "+winSite, "replicate", "-r", repo, "--vm", "db", "--qmp", vms["db"].QMPSocket())
	// Configured to, the primary pauses a VM it finds failed over.
	prim.fails(16, "was failed over", "replicate", "-r", repo, "--vm", "web", "--qmp", vms["web"].QMPSocket(), "--pause-when-fenced")
	if out, err := vms["web"].QMP(t.Context(), "query-status", nil); err != nil || !strings.Contains(string(out), `"paused"`) {
		t.Fatalf("primary web after a fenced replicate with --pause-when-fenced: %v %s", err, out)
	}
	if out, err := vms["db"].QMP(t.Context(), "query-status", nil); err != nil || !strings.Contains(string(out), `"running"`) {
		t.Fatalf("primary db was paused without --pause-when-fenced: %v %s", err, out)
	}

	st := dr.ok("status", "-r", repo, "--json", "--site", winSite, "--state-dir", winDir)
	var status struct {
		VMs []struct {
			VM      string `json:"vm"`
			Owner   string `json:"owner"`
			Epoch   int64  `json:"epoch"`
			Replica bool   `json:"replica_running"`
			Health  string `json:"health"`
		} `json:"vms"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || len(status.VMs) != 2 {
		t.Fatalf("status: %v\n%s", err, st)
	}
	for _, v := range status.VMs {
		if v.Owner != winSite || v.Epoch != 1 || !v.Replica || v.Health != "healthy" {
			t.Fatalf("status of %s: %+v", v.VM, v)
		}
	}

	// Interrupted failover: stop the replicas, rerun the winner's
	// failover and kill it while it boots; the rerun resumes and no VM
	// runs twice.
	dr.ok("stop-replicas", "--plan", planFile, "--site", winSite, "--state-dir", winDir, "--grace", "2s")
	if got := replicaQEMUs(t, winDir); len(got) != 0 {
		t.Fatalf("replicas left after stop-replicas: %v", got)
	}
	cmd := exec.Command(drctlBin, "failover", "-r", repo, "--plan", planFile, "--force", "--site", winSite, "--state-dir", winDir)
	cmd.Env, cmd.Dir = dr.vars, dr.dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitReplicaStarted(t, cmd, winDir, func() string { return "" })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	again := parseFailover(t, dr.ok("failover", "-r", repo, "--plan", planFile, "--json", "--site", winSite, "--state-dir", winDir))
	if !again.OK || again.Run != res.Run || !again.VMs[0].AlreadyRunning {
		t.Fatalf("resumed failover: %+v (first run %s)", again, res.Run)
	}
	if got := replicaQEMUs(t, dr.dir); len(got) != 2 {
		t.Fatalf("%d replica QEMUs after the resumed failover, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	dr.ok("stop-replicas", "--plan", planFile, "--site", winSite, "--state-dir", winDir, "--grace", "2s")
}

// TestFailoverBadInput: plans that cannot work fail with a clear message
// before anything boots or any fence is taken.
func TestFailoverBadInput(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	e.ok("init", "-r", repo)
	img := filepath.Join(e.dir, "disk.img")
	makeImage(t, img, 4<<20, 1)
	e.ok("replicate", "-r", repo, "--vm", "db", "--disk", img)

	write := func(name, body string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "accel: tcg\nnetworks:\n  lan: {user: {}}\ngroups:\n  - name: g\n    vms:\n"
	cases := []struct {
		name, plan string
		code       int
		want       string
	}{
		{"unknown vm", base + "      - vm: nosuch\n", 15, "vm nosuch"},
		{"missing recovery point", base + "      - vm: db\n        recovery_point: deadbeef\n", 2, "deadbeef"},
		{"missing bridge", "accel: tcg\nnetworks:\n  lan: {bridge: br-nosuch}\ngroups:\n  - name: g\n    vms:\n      - vm: db\n", 2, "br-nosuch"},
		{"undefined network", base + "      - vm: db\n        networks: {n0: wan}\n", 2, "wan"},
		{"bad yaml", "groups: [\n", 2, "bad.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := filepath.Join(e.dir, "state-"+strings.ReplaceAll(c.name, " ", "-"))
			p := write(strings.ReplaceAll(c.name, " ", "-")+".yaml", c.plan)
			if c.name == "bad yaml" {
				p = write("bad.yaml", c.plan)
			}
			e.fails(c.code, c.want, "failover", "-r", repo, "--plan", p, "--site", "dr", "--state-dir", state)
			if _, err := os.Stat(filepath.Join(state, "replicas")); err == nil {
				t.Fatal("a replica directory was made for a plan that cannot run")
			}
			if fences, _ := filepath.Glob(filepath.Join(repo, "fence", "*")); len(fences) != 0 {
				t.Fatalf("fences taken: %v", fences)
			}
		})
	}

	// A damaged manifest is reported, naming the snapshot.
	snaps, _ := filepath.Glob(filepath.Join(repo, "snapshots", "db", "*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots: %v", snaps)
	}
	data, _ := os.ReadFile(snaps[0])
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(snaps[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	p := write("ok.yaml", base+"      - vm: db\n")
	r := e.run("failover", "-r", repo, "--plan", p, "--site", "dr", "--state-dir", filepath.Join(e.dir, "state-damaged"))
	if r.code == 0 || !strings.Contains(r.stderr, "vm db") || !strings.Contains(r.stderr, "nothing was started") {
		t.Fatalf("failover with a damaged manifest: %s", r)
	}
}
