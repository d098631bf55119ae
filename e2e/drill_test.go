package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/drctl/drctl/internal/testvm"
)

// listener counts the TCP connections made to it.
type listener struct {
	addr     string
	accepted atomic.Int64
}

func listen(t *testing.T, ip string) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := &listener{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.accepted.Add(1)
			c.Close()
		}
	}()
	return l
}

// hostIP is an address of this host outside loopback: what a guest
// could reach on the production network.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatal("this host has no non-loopback IPv4 address")
	return ""
}

type drillJSON struct {
	ID       string    `json:"id"`
	Plan     string    `json:"plan"`
	Passed   bool      `json:"passed"`
	Error    string    `json:"error"`
	TornDown time.Time `json:"torn_down"`
	Kept     bool      `json:"kept"`
	VMs      []struct {
		VM         string  `json:"vm"`
		Status     string  `json:"status"`
		Error      string  `json:"error"`
		RPOSeconds float64 `json:"rpo_seconds"`
		RTOSeconds float64 `json:"rto_seconds"`
		Checks     []struct {
			Name      string `json:"name"`
			DrillOnly bool   `json:"drill_only"`
			OK        bool   `json:"ok"`
			Output    string `json:"output"`
			Err       string `json:"err"`
		} `json:"checks"`
	} `json:"vms"`
}

func parseDrill(t *testing.T, data []byte) drillJSON {
	t.Helper()
	var d drillJSON
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("parse drill report: %v\n%s", err, data)
	}
	return d
}

// drillPlan: db and web, each checked by reading its data back on the
// console; drill-only checks read the console for the guest's attempts to
// reach the host (they must have failed).
func drillPlan(name string, vms []string, extraHealth string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\naccel: tcg\nnetworks:\n  lan: {user: {}}\ngroups:\n", name)
	for _, vm := range vms {
		fmt.Fprintf(&b, "  - name: g-%s\n    vms:\n      - vm: %s\n        networks: {n0: lan}\n        health:\n", vm, vm)
		fmt.Fprintf(&b, "          - serial: 'DRTEST: DATA disk=0 dev=\\S+ offset=0 hex=(%s){64}'\n            timeout: 3m\n", dataByte(vm))
		b.WriteString(extraHealth)
	}
	b.WriteString("drill:\n  checks:\n")
	for _, vm := range vms {
		fmt.Fprintf(&b, "    - vm: %s\n      name: no route to the host\n      command: [sh, -c, 'n=$(grep -c \"DRTEST: CONNECT .*result=failed\" \"$DRCTL_SERIAL_LOG\"); test \"$n\" = 2']\n      timeout: 2m\n", vm)
	}
	return b.String()
}

func dataByte(vm string) string {
	if vm == "db" {
		return "db"
	}
	return "3e"
}

func (e *env) countQEMUs(t *testing.T) int {
	t.Helper()
	return len(replicaQEMUs(t, e.dir))
}

// fenceObjects reads every object under the repository's fence/ prefix.
func fenceObjects(t *testing.T, bucket string) map[string][]byte {
	t.Helper()
	c := s3srv.Client()
	out, err := c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("repo/fence/")})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, o := range out.Contents {
		g, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(g.Body)
		g.Body.Close()
		m[*o.Key] = buf.Bytes()
	}
	return m
}

// TestDrill: drills of a 2-VM plan at a recovery site while production
// keeps replicating the same VMs.
func TestDrill(t *testing.T) {
	loop := listen(t, "127.0.0.1")
	outside := listen(t, hostIP(t))
	_, loopPort, _ := net.SplitHostPort(loop.addr)
	connect := "drtest.connect=10.0.2.2:" + loopPort + "," + outside.addr

	prim := newEnv(t)
	prim.set("DRCTL_SITE=primary")
	repo := prim.s3Repo()
	bucket := strings.Split(strings.TrimPrefix(repo, "s3:"+s3srv.Endpoint+"/"), "/")[0]
	prim.ok("init", "-r", repo)
	vms := map[string]*testvm.VM{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"db", "web"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := testvm.Start(t.Context(), t, testvm.Options{Mode: testvm.ModeIdle, Net: true, Append: []string{connect},
				Disks: []testvm.Disk{{Size: 16 << 20}}})
			if err == nil {
				_, err = vm.WaitSerial(t.Context(), regexp.MustCompile(`DRTEST: CONNECT to=\S+ result=\w+\n(.|\n)*DRTEST: CONNECT to=\S+ result=\w+\n`))
			}
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
	// The control case: the primaries, not isolated, reach both services.
	if loop.accepted.Load() != 2 || outside.accepted.Load() != 2 {
		t.Fatalf("primaries reached loopback %d and outside %d times, want 2 each:\n%s", loop.accepted.Load(), outside.accepted.Load(), vms["db"].Serial())
	}
	hmpWrite(t, vms["db"], 0, 0, 1<<20, 0xdb)
	hmpWrite(t, vms["web"], 0, 0, 1<<20, 0x3e)
	for name, vm := range vms {
		prim.ok("replicate", "-r", repo, "--vm", name, "--qmp", vm.QMPSocket())
	}
	// A fence of another VM, failed over long ago: a drill must not touch it.
	if _, err := s3srv.Client().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("repo/fence/legacy"),
		Body: strings.NewReader(`{"version":1,"vm":"legacy","epoch":3,"owner":"dr","run":"r0","state":"failed-over","time":"2026-01-01T00:00:00Z"}`)}); err != nil {
		t.Fatal(err)
	}
	fencesBefore := fenceObjects(t, bucket)

	dr := newEnv(t)
	dr.set("DRCTL_SITE=dr")
	t.Cleanup(func() { killReplicas(dr.dir) })
	state := filepath.Join(dr.dir, "site")
	planFile := filepath.Join(dr.dir, "prod.yaml")
	if err := os.WriteFile(planFile, []byte(drillPlan("prod", []string{"db", "web"}, "")), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("passes while production replicates", func(t *testing.T) {
		reportDir := filepath.Join(dr.dir, "report")
		cmd := exec.Command(drctlBin, "drill", "-r", repo, "--plan", planFile, "--state-dir", state, "--report", reportDir)
		cmd.Env, cmd.Dir = dr.vars, dr.dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Production replicates the same VMs while the drill runs.
		for dr.countQEMUs(t) == 0 && cmd.ProcessState == nil {
			time.Sleep(50 * time.Millisecond)
		}
		hmpWrite(t, vms["web"], 0, 1<<20, 4096, 0x55)
		prim.ok("replicate", "-r", repo, "--vm", "web", "--qmp", vms["web"].QMPSocket())
		if err := cmd.Wait(); err != nil {
			t.Fatalf("drill: %v\n%s", err, out.String())
		}
		if rows := snapshots(t, prim, repo, "--vm", "web"); len(rows) != 2 {
			t.Fatalf("production snapshots of web during the drill: %d, want 2", len(rows))
		}
		data, err := os.ReadFile(filepath.Join(reportDir, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		d := parseDrill(t, data)
		if !d.Passed || len(d.VMs) != 2 || d.TornDown.IsZero() {
			t.Fatalf("drill report: %+v\n%s", d, out.String())
		}
		for _, v := range d.VMs {
			drillOnly := 0
			for _, c := range v.Checks {
				if c.DrillOnly && c.OK {
					drillOnly++
				}
			}
			if v.Status != "passed" || v.RTOSeconds <= 0 || v.RPOSeconds <= 0 || drillOnly != 1 {
				t.Fatalf("vm %s in the report: %+v", v.VM, v)
			}
			t.Logf("drill vm %s: RPO %.1fs, RTO %.1fs", v.VM, v.RPOSeconds, v.RTOSeconds)
		}
		for _, f := range []string{"report.html", "report.md"} {
			if st, err := os.Stat(filepath.Join(reportDir, f)); err != nil || st.Size() == 0 {
				t.Fatalf("%s: %v", f, err)
			}
		}
		// Isolated: the replicas reached neither the host's loopback nor
		// its outside address (the drill checks saw both attempts fail).
		if loop.accepted.Load() != 2 || outside.accepted.Load() != 2 {
			t.Fatalf("a drill replica reached the host: loopback %d, outside %d connections", loop.accepted.Load(), outside.accepted.Load())
		}
		if n := dr.countQEMUs(t); n != 0 {
			t.Fatalf("%d QEMUs left after the drill", n)
		}
		if left, _ := filepath.Glob(filepath.Join(state, "drills", "prod-*")); len(left) != 0 {
			t.Fatalf("drill directories left: %v", left)
		}
		if after := fenceObjects(t, bucket); fmt.Sprint(after) != fmt.Sprint(fencesBefore) {
			t.Fatalf("fences changed by a drill:\nbefore %s\nafter  %s", fencesBefore, after)
		}
		list := dr.ok("drills", "list", "-r", repo, "--json")
		if !strings.Contains(list.stdout, d.ID) {
			t.Fatalf("drills list: %s", list)
		}
		md := dr.ok("drills", "show", d.ID[:8], "-r", repo, "--format", "md")
		if !strings.Contains(md.stdout, "PASSED") || !strings.Contains(md.stdout, "| db") {
			t.Fatalf("drills show --format md: %s", md)
		}
		st := dr.ok("status", "-r", repo, "--json", "--state-dir", state)
		if !strings.Contains(st.stdout, `"last_drills":[{"plan":"prod","id":"`+d.ID) {
			t.Fatalf("status does not show the last drill: %s", st)
		}
	})

	t.Run("failing check reports and tears down", func(t *testing.T) {
		bad := filepath.Join(dr.dir, "bad.yaml")
		extra := "          - serial: 'never printed'\n            timeout: 3s\n"
		if err := os.WriteFile(bad, []byte(drillPlan("bad", []string{"db"}, extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		r := dr.run("drill", "-r", repo, "--plan", bad, "--state-dir", state, "--json")
		if r.code != 18 {
			t.Fatalf("failing drill: want exit 18, got %s", r)
		}
		d := parseDrill(t, []byte(r.stdout))
		if d.Passed || d.VMs[0].Status != "failed" || d.TornDown.IsZero() || len(d.VMs[0].Checks) != 2 || d.VMs[0].Checks[1].OK ||
			!strings.Contains(d.VMs[0].Checks[1].Err+d.VMs[0].Error, "never printed") {
			t.Fatalf("failed drill report: %+v", d)
		}
		if n := dr.countQEMUs(t); n != 0 {
			t.Fatalf("%d QEMUs left after a failed drill", n)
		}
	})

	t.Run("crashed replica fails fast and tears down", func(t *testing.T) {
		slow := filepath.Join(dr.dir, "slow.yaml")
		extra := "          - serial: 'never printed'\n            timeout: 5m\n"
		if err := os.WriteFile(slow, []byte(drillPlan("slow", []string{"db"}, extra)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(drctlBin, "drill", "-r", repo, "--plan", slow, "--state-dir", state, "--json")
		cmd.Env, cmd.Dir = dr.vars, dr.dir
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReplicaStarted(t, cmd, dr.dir, errb.String)
		time.Sleep(2 * time.Second) // into the checks
		killReplicas(dr.dir)
		crashed := time.Now()
		err := cmd.Wait()
		if time.Since(crashed) > 30*time.Second {
			t.Fatalf("the drill took %v to notice its replica died", time.Since(crashed))
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 18 {
			t.Fatalf("drill with a crashed replica: %v\n%s", err, errb.String())
		}
		d := parseDrill(t, out.Bytes())
		if d.Passed || !strings.Contains(d.VMs[0].Error, "QEMU exited") || d.TornDown.IsZero() {
			t.Fatalf("report of the crashed drill: %+v", d)
		}
	})

	t.Run("two plans at once", func(t *testing.T) {
		var rs [2]result
		for i, vm := range []string{"db", "web"} {
			p := filepath.Join(dr.dir, "only-"+vm+".yaml")
			if err := os.WriteFile(p, []byte(drillPlan("only-"+vm, []string{vm}, "")), 0o644); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs[i] = dr.run("drill", "-r", repo, "--plan", p, "--state-dir", state, "--json")
			}()
		}
		wg.Wait()
		for i, r := range rs {
			if r.code != 0 || !parseDrill(t, []byte(r.stdout)).Passed {
				t.Fatalf("concurrent drill %d: %s", i, r)
			}
		}
		if n := dr.countQEMUs(t); n != 0 {
			t.Fatalf("%d QEMUs left", n)
		}
	})

	t.Run("interrupted drill tears down", func(t *testing.T) {
		cmd := exec.Command(drctlBin, "drill", "-r", repo, "--plan", planFile, "--state-dir", state)
		cmd.Env, cmd.Dir = dr.vars, dr.dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReplicaStarted(t, cmd, dr.dir, out.String)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("interrupted drill: %v\n%s", err, out.String())
		}
		if n := dr.countQEMUs(t); n != 0 {
			t.Fatalf("%d QEMUs left after Ctrl-C:\n%s", n, out.String())
		}
	})

	t.Run("kept replicas end at their time-to-live", func(t *testing.T) {
		r := dr.ok("drill", "-r", repo, "--plan", planFile, "--state-dir", state, "--keep", "--ttl", "8s", "--json")
		if d := parseDrill(t, []byte(r.stdout)); !d.Kept || !d.Passed {
			t.Fatalf("kept drill: %s", r)
		}
		if n := dr.countQEMUs(t); n != 2 {
			t.Fatalf("%d replicas running after a drill with --keep, want 2", n)
		}
		deadline := time.Now().Add(40 * time.Second)
		for dr.countQEMUs(t) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("kept replicas still run long after their time-to-live")
			}
			time.Sleep(200 * time.Millisecond)
		}
		// drill stop ends kept replicas at once.
		dr.ok("drill", "-r", repo, "--plan", planFile, "--state-dir", state, "--keep", "--ttl", "1h")
		dr.ok("drill", "stop", "--state-dir", state)
		if n := dr.countQEMUs(t); n != 0 {
			t.Fatalf("%d replicas after drill stop", n)
		}
	})
}
