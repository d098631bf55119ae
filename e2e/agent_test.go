package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/internal/syncbuf"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type snapRow struct {
	ID    string `json:"id"`
	Stats struct {
		BytesRead   int64 `json:"bytes_read"`
		BytesNew    int64 `json:"bytes_new"`
		BytesStored int64 `json:"bytes_stored"`
	} `json:"stats"`
}

func snapRows(t *testing.T, e *env, repo string) []snapRow {
	t.Helper()
	r := e.ok("snapshots", "-r", repo, "--json")
	var rows []snapRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("snapshots: %v\n%s", err, r)
	}
	return rows
}

// stopAgent signals a running agent and checks it exits 130 within 30 s.
func stopAgent(t *testing.T, cmd *exec.Cmd, sig os.Signal, log fmt.Stringer) {
	t.Helper()
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("agent after %v: %v, want exit 130\n%s", sig, err, log)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the agent did not stop on %v\n%s", sig, log)
	}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentDaemon runs the built `drctl agent`, on a local repository and
// on one in a real S3 server: it is killed with SIGKILL mid-upload and
// restarted (nothing lost, the upload is reused), reloads its config on
// SIGHUP (refusing a bad one), and stops on SIGTERM.
func TestAgentDaemon(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		e := newEnv(t)
		repo := filepath.Join(e.dir, "repo")
		testAgentDaemon(t, e, repo, repo)
	})
	t.Run("s3", func(t *testing.T) {
		e := newEnv(t)
		bucket := s3srv.NewBucket(t)
		// The S3 server keeps each object as a file under its root: the
		// test watches the leases there, as on the local repository.
		testAgentDaemon(t, e, "s3:"+s3srv.Endpoint+"/"+bucket+"/repo", filepath.Join(s3srv.Root, bucket, "repo"))
	})
}

// testAgentDaemon is TestAgentDaemon on repository repo, whose objects
// are the files under dir.
func testAgentDaemon(t *testing.T, e *env, repo, dir string) {
	e.ok("init", "-r", repo)
	img := filepath.Join(e.dir, "big.img")
	makeImage(t, img, 64<<20, 5)
	addr := freePort(t)
	// Not in the working directory, where every drctl command would read it.
	os.MkdirAll(filepath.Join(e.dir, "etc"), 0o755)
	cfgFile := filepath.Join(e.dir, "etc", "drctl.yaml")
	writeCfg := func(schedule, extra string) {
		t.Helper()
		cfg := fmt.Sprintf("repository: %s\nsite: primary\nagent:\n  metrics: %s\n  prune: \"off\"\n  bandwidth: 40MiB\nvms:\n  big:\n    disks: [{path: %s}]\n    schedule: %q\n    keep: {last: 5}\n%s",
			repo, addr, img, schedule, extra)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("*/2 * * * * *", "")
	start := func() (*exec.Cmd, *syncbuf.Buffer) {
		cmd := exec.Command(drctlBin, "agent", "--config", cfgFile, "--log-level", "debug")
		cmd.Env, cmd.Dir = e.vars, e.dir
		out := &syncbuf.Buffer{Max: 64 << 20} // the whole run: the test searches its log
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, out
	}
	// The first snapshot with --once, so that the image changes below
	// while no agent reads it.
	e.ok("agent", "--config", cfgFile, "--once")
	if n := len(snapRows(t, e, repo)); n != 1 {
		t.Fatalf("%d snapshots after agent --once, want 1", n)
	}

	// 48 MiB of new data: at the 40 MiB/s cap the upload takes over a
	// second, long enough to kill the agent in the middle of it.
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 48<<20)
	rand.Read(buf)
	if _, err := f.WriteAt(buf, 8<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	packsBefore := len(packFiles(t, dir))
	agent, log := start()
	// Kill once a pack is uploaded and recorded in the writer's lease (the
	// next run finds it there), and before the snapshot is committed. Only
	// lease objects count: a local target's half-written .tmp- file is not
	// one, and a kill before its rename leaves the old lease.
	waitUntil(t, "an uploaded pack of the next run", time.Minute, func() bool {
		leases, _ := filepath.Glob(filepath.Join(dir, "leases", "[^.]*"))
		for _, l := range leases {
			if b, _ := os.ReadFile(l); strings.Contains(string(b), `"unindexed"`) {
				return true
			}
		}
		return false
	})
	agent.Process.Signal(syscall.SIGKILL)
	agent.Wait()
	rows := snapRows(t, e, repo)
	if len(rows) != 1 {
		// The run may have finished before the kill landed: then there is
		// nothing to prove about resuming.
		t.Fatalf("%d snapshots after killing the agent mid-upload, want 1 (the kill came too late)\n%s", len(rows), log)
	}
	uploaded := len(packFiles(t, dir)) - packsBefore
	leaseDump := ""
	if ls, _ := filepath.Glob(filepath.Join(dir, "leases", "[^.]*")); len(ls) > 0 {
		for _, l := range ls {
			b, _ := os.ReadFile(l)
			leaseDump += string(b) + "\n"
		}
	}

	agent, log = start()
	waitUntil(t, "the snapshot after the restart", time.Minute, func() bool { return len(snapRows(t, e, repo)) >= 2 })
	rows = snapRows(t, e, repo)
	newest := rows[1] // the first after the restart
	t.Logf("killed after %d new packs; the rerun stored %d new bytes of 48 MiB changed", uploaded, newest.Stats.BytesNew)
	if newest.Stats.BytesNew > (48-12)<<20 || !strings.Contains(log.String(), "resumed an interrupted upload") {
		t.Fatalf("the rerun stored %d bytes: nothing of the killed upload was reused\nleases after the kill:\n%s\n%s", newest.Stats.BytesNew, leaseDump, log)
	}

	metricsAt := func(a string) string {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	metrics := func() string { return metricsAt(addr) }
	waitUntil(t, "the metrics endpoint", 10*time.Second, func() bool { return strings.Contains(metrics(), "drctl_vm_replications_total") })

	// A bad config is refused; the agent goes on with the old one.
	if err := os.WriteFile(cfgFile, []byte("vms:\n  big: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agent.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the refused reload", 10*time.Second, func() bool {
		return strings.Contains(metrics(), `drctl_agent_config_reloads_total{result="error"} 1`)
	})
	if !strings.Contains(log.String(), "config reload refused") {
		t.Fatalf("no log line about the refused reload:\n%s", log)
	}
	n := len(snapRows(t, e, repo))
	waitUntil(t, "a snapshot under the old config", 30*time.Second, func() bool { return len(snapRows(t, e, repo)) > n })
	// A good one is taken: replications stop with no schedule... here a
	// slower schedule and an RPO target.
	writeCfg("0 0 1 1 *", "    rpo: 1h\n")
	agent.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload", 10*time.Second, func() bool {
		return strings.Contains(metrics(), `drctl_agent_config_reloads_total{result="ok"} 1`) &&
			strings.Contains(metrics(), `drctl_vm_rpo_target_seconds{vm="big"} 3600`)
	})

	// A reload that adds a repository and a VM on it, moves the metrics
	// to another address and lifts the upload cap: all of it applies.
	repo2 := filepath.Join(e.dir, "repo2")
	e.ok("init", "-r", repo2)
	small := filepath.Join(e.dir, "small.img")
	makeImage(t, small, 4<<20, 6)
	addr2 := freePort(t)
	cfg := fmt.Sprintf("repository: %s\nrepositories:\n  second: {url: %s}\nsite: primary\nagent:\n  metrics: %s\n  prune: \"off\"\n"+
		"vms:\n  big:\n    disks: [{path: %s}]\n    schedule: \"0 0 1 1 *\"\n  small:\n    repository: second\n    disks: [{path: %s}]\n    schedule: \"*/2 * * * * *\"\n",
		repo, repo2, addr2, img, small)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	agent.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "a snapshot of the VM added by the reload, seen at the new metrics address", 30*time.Second, func() bool {
		return strings.Contains(metricsAt(addr2), `drctl_vm_replications_total{result="ok",vm="small"}`)
	})
	if m := metricsAt(addr2); !strings.Contains(m, `drctl_agent_config_reloads_total{result="ok"} 2`) {
		t.Fatalf("second reload not counted:\n%s", m)
	}
	if m := metricsAt(addr); m != "" {
		t.Fatal("the old metrics address still answers after the reload moved it")
	}
	if n := len(snapRows(t, e, repo2)); n < 1 {
		t.Fatalf("%d snapshots in the repository added by the reload", n)
	}

	// SIGTERM: a stop at a safe point, exit 130 like any interrupted command.
	stopAgent(t, agent, syscall.SIGTERM, log)
	e.ok("verify", "-r", repo, "--read-data")
	e.restoreSame(repo, "big", img)
}

// TestAgentTargetDown: the S3 server of the repository crashes while the
// agent replicates every second and comes back 20 s later on the same
// address and data. The agent retries, the RPO alert reaches the webhook,
// a snapshot commits after the server returns, the alert clears, and the
// repository verifies.
func TestAgentTargetDown(t *testing.T) {
	e := newEnv(t)
	srv := s3test.Start(t)
	e.set("AWS_ACCESS_KEY_ID=" + srv.AccessKey)
	e.set("AWS_SECRET_ACCESS_KEY=" + srv.SecretKey)
	repo := "s3:" + srv.Endpoint + "/" + srv.NewBucket(t) + "/repo"
	e.ok("init", "-r", repo)
	img := filepath.Join(e.dir, "db.img")
	makeImage(t, img, 8<<20, 7)

	type alert struct {
		VM    string `json:"vm"`
		State string `json:"state"`
	}
	var mu sync.Mutex
	var alerts []alert
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}))
	defer hook.Close()
	states := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var s []string
		for _, a := range alerts {
			s = append(s, a.VM+":"+a.State)
		}
		return s
	}
	cfgFile := filepath.Join(e.dir, "drctl.yaml")
	cfg := fmt.Sprintf("repository: %s\nsite: primary\nagent:\n  webhook: %s\n  prune: \"off\"\nvms:\n  db:\n    disks: [{path: %s}]\n    schedule: \"* * * * * *\"\n    rpo: 5s\n",
		repo, hook.URL, img)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(drctlBin, "agent", "--config", cfgFile)
	cmd.Env, cmd.Dir = e.vars, e.dir
	log := &syncbuf.Buffer{Max: 16 << 20}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	committed := func() int { return strings.Count(log.String(), "snapshot committed") }
	waitUntil(t, "a first snapshot", 30*time.Second, func() bool { return committed() > 0 })

	srv.Down()
	down := time.Now()
	time.Sleep(time.Second) // a run that began just before the crash may still commit
	before := committed()
	waitUntil(t, "the RPO alert while the target is down", 30*time.Second, func() bool {
		return slices.Contains(states(), "db:violated")
	})
	time.Sleep(20*time.Second - time.Since(down))
	if n := committed(); n != before {
		t.Fatalf("%d snapshots committed while the S3 server was down\n%s", n-before, log)
	}
	if !strings.Contains(log.String(), "retrying") {
		t.Fatalf("no retries logged while the target was down\n%s", log)
	}
	if err := srv.Up(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	waitUntil(t, "a snapshot after the target returned", 2*time.Minute, func() bool { return committed() > before })
	t.Logf("down for %v; a snapshot committed %v after the server returned; %d failed runs logged",
		up.Sub(down).Round(time.Second), time.Since(up).Round(100*time.Millisecond), strings.Count(log.String(), "replication failed"))
	waitUntil(t, "the RPO alert to clear", 30*time.Second, func() bool {
		return slices.Contains(states(), "db:recovered")
	})
	if s := states(); len(s) != 2 || s[0] != "db:violated" || s[1] != "db:recovered" {
		t.Fatalf("alerts %v, want violated then recovered", s)
	}
	stopAgent(t, cmd, os.Interrupt, log) // Ctrl-C
	e.ok("verify", "-r", repo, "--read-data")
	e.restoreSame(repo, "db", img)
}
