package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/internal/testimg"
	"github.com/drctl/drctl/internal/testvm"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
)

// testRepo makes a local repository and an opener for it.
func testRepo(t *testing.T, wrap func(targets.Target) targets.Target) (string, Opener) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lt, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), lt, "pw", repo.Options{KDF: repo.FastKDF}); err != nil {
		t.Fatal(err)
	}
	return dir, func(ctx context.Context, _ config.Repository) (*repo.Repository, error) {
		var tg targets.Target = lt
		if wrap != nil {
			tg = wrap(lt)
		}
		return repo.Open(ctx, tg, "pw", repo.Options{})
	}
}

func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drctl.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// scrape reads the agent's metrics the way Prometheus does.
func scrape(t *testing.T, url string) map[string]*model.Sample {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]*model.Sample{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			break
		}
		vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, &mf)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range vec {
			out[s.Metric.String()] = s
		}
	}
	if len(out) == 0 {
		t.Fatal("no metrics scraped")
	}
	return out
}

func metric(t *testing.T, m map[string]*model.Sample, name string) float64 {
	t.Helper()
	s, ok := m[name]
	if !ok {
		var names []string
		for k := range m {
			if strings.HasPrefix(k, "drctl_") {
				names = append(names, k)
			}
		}
		t.Fatalf("no metric %s; have %v", name, names)
	}
	return float64(s.Value)
}

// startAgent runs ag in the background. stop ends it and fails the test
// unless Run returns nil within 30 s; it also runs at the test's end.
func startAgent(t *testing.T, ag *Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the agent did not stop within 30 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentSchedules runs the agent with second-granular schedules over
// an image file that changes and a running test guest: snapshots appear
// on schedule, retention keeps exactly what the rules say, prune runs,
// verify passes, the metrics endpoint reports sane values, and the agent
// stops cleanly.
func TestAgentSchedules(t *testing.T) {
	vm, err := testvm.Start(t.Context(), t, testvm.Options{Mode: testvm.ModeScatter, ScatterRate: 20, Disks: []testvm.Disk{{Size: 16 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "files.img")
	testimg.Write(t, img, 8<<20, 1)
	dir, open := testRepo(t, nil)
	cfg := loadConfig(t, fmt.Sprintf(`
repository: %s
agent:
  prune: "*/5 * * * * *"
  heartbeat: 1s
vms:
  files:
    disks: [{path: %s}]
    schedule: "* * * * * *"
    rpo: 1h
    keep: {last: 3}
  guest:
    qmp: %s
    schedule: "*/2 * * * * *"
    keep: {last: 2}
`, dir, img, vm.QMPSocket()))
	ag, err := New(Options{Config: cfg, Site: "primary", Host: "hv1", Open: open, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), RPOCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ag.Handler())
	defer srv.Close()
	stop := startAgent(t, ag)

	// The image keeps changing, as a running VM's would.
	stopWrites := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(0); ; i++ {
			select {
			case <-stopWrites:
				return
			case <-time.After(300 * time.Millisecond):
			}
			testimg.Scatter(t, img, 5, 100+i)
		}
	}()
	runFor := 40 * time.Second
	if d, err := time.ParseDuration(os.Getenv("DRCTL_AGENT_SOAK")); err == nil {
		runFor = d // e.g. DRCTL_AGENT_SOAK=5m for a longer soak
	}
	time.Sleep(runFor)
	close(stopWrites)
	wg.Wait()

	m := scrape(t, srv.URL)
	okFiles := metric(t, m, `drctl_vm_replications_total{result="ok", vm="files"}`)
	okGuest := metric(t, m, `drctl_vm_replications_total{result="ok", vm="guest"}`)
	t.Logf("in %v: files %v snapshots, guest %v", runFor, okFiles, okGuest)
	secs := runFor.Seconds()
	if okFiles < secs*0.5 || okFiles > secs+1 {
		t.Fatalf("files (every second) replicated %v times in %v", okFiles, runFor)
	}
	if okGuest < secs/2*0.5 || okGuest > secs/2+1 {
		t.Fatalf("guest (every 2 s) replicated %v times in %v", okGuest, runFor)
	}
	if last := metric(t, m, `drctl_vm_last_success_timestamp_seconds{vm="files"}`); time.Since(time.Unix(int64(last), 0)) > 5*time.Second {
		t.Fatalf("last success of files is %v old", time.Since(time.Unix(int64(last), 0)))
	}
	if rpo := metric(t, m, `drctl_vm_rpo_seconds{vm="files"}`); rpo < 0 || rpo > 5 {
		t.Fatalf("rpo of files: %v s", rpo)
	}
	if v := metric(t, m, `drctl_vm_rpo_violated{vm="files"}`); v != 0 {
		t.Fatal("RPO reported violated")
	}
	if n := metric(t, m, `drctl_vm_snapshots{vm="files"}`); n != 3 {
		t.Fatalf("files keeps %v snapshots, want 3", n)
	}
	if n := metric(t, m, `drctl_vm_snapshots{vm="guest"}`); n != 2 {
		t.Fatalf("guest keeps %v snapshots, want 2", n)
	}
	if metric(t, m, `drctl_repository_prunes_total{repository="`+dir+`", result="ok"}`) < 1 {
		t.Fatal("no prune ran")
	}
	if d := metric(t, m, `drctl_repository_dedup_ratio{repository="`+dir+`"}`); d < 1.2 {
		// Kept snapshots of two mostly unchanged disks share their data.
		t.Fatalf("dedup ratio %v", d)
	}
	if metric(t, m, `drctl_vm_bytes_read_total{vm="guest"}`) <= 0 || metric(t, m, `drctl_vm_bytes_uploaded_total{vm="files"}`) <= 0 {
		t.Fatal("byte counters did not move")
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}

	stop()
	r, err := open(t.Context(), config.Repository{})
	if err != nil {
		t.Fatal(err)
	}
	for vmName, keep := range map[string]int{"files": 3, "guest": 2} {
		refs, err := r.ListSnapshots(t.Context(), vmName)
		// A run stopped between its commit and its retention leaves one more.
		if err != nil || len(refs) < keep || len(refs) > keep+1 {
			t.Fatalf("%s: %d snapshots after the agent stopped, want %d: %v", vmName, len(refs), keep, err)
		}
	}
	rep, err := r.Verify(t.Context(), repo.VerifyOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after prunes: %v %s", err, rep.Summary())
	}
	hb, err := os.ReadDir(filepath.Join(dir, "heartbeats", "primary"))
	if err != nil || len(hb) != 2 {
		t.Fatalf("heartbeats: %v %v", hb, err)
	}
}

// TestAgentRPOAlert: the target fails for a while; the agent keeps
// retrying, the RPO alert fires (webhook), and clears once replication
// works again.
func TestAgentRPOAlert(t *testing.T) {
	var faulty *targets.Faulty
	var mu sync.Mutex
	dir, open := testRepo(t, func(tg targets.Target) targets.Target {
		mu.Lock()
		defer mu.Unlock()
		faulty = targets.NewFaulty(tg)
		return targets.NewRetry(faulty, targets.FastRetryOptions())
	})
	var alerts []Alert
	var amu sync.Mutex
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		amu.Lock()
		alerts = append(alerts, a)
		amu.Unlock()
	}))
	defer hook.Close()
	img := filepath.Join(t.TempDir(), "db.img")
	testimg.Write(t, img, 1<<20, 2)
	cfg := loadConfig(t, fmt.Sprintf(`
repository: %s
agent:
  webhook: %s
  prune: "off"
vms:
  db:
    disks: [{path: %s}]
    schedule: "* * * * * *"
    rpo: 3s
`, dir, hook.URL, img))
	ag, err := New(Options{Config: cfg, Site: "primary", Open: open, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), RPOCheck: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, ag)
	last := func() (Alert, int) {
		amu.Lock()
		defer amu.Unlock()
		if len(alerts) == 0 {
			return Alert{}, 0
		}
		return alerts[len(alerts)-1], len(alerts)
	}
	waitFor(t, "a first snapshot", 10*time.Second, func() bool {
		return testutilValue(ag, `drctl_vm_replications_total`, "db", "ok") >= 1
	})
	// The target goes down: every write fails.
	mu.Lock()
	rule := faulty.Add(targets.Fault{Ops: []targets.Op{targets.OpPut, targets.OpPutIfAbsent}})
	mu.Unlock()
	waitFor(t, "the violated alert", 15*time.Second, func() bool { a, _ := last(); return a.State == "violated" })
	a, n := last()
	if a.VM != "db" || a.Site != "primary" || a.TargetSeconds != 3 || a.RPOSeconds <= 3 || n != 1 {
		t.Fatalf("alert: %+v (%d alerts)", a, n)
	}
	if testutilValue(ag, "drctl_vm_replications_total", "db", "error") < 1 || faulty.Fired(rule) < 5 {
		t.Fatalf("no failed runs or retries while the target was down (fired %d)", faulty.Fired(rule))
	}
	// Back up: the next run commits and the alert clears.
	mu.Lock()
	faulty.Clear()
	mu.Unlock()
	waitFor(t, "the recovered alert", 15*time.Second, func() bool { a, _ := last(); return a.State == "recovered" })
	if _, n := last(); n != 2 {
		t.Fatalf("%d alerts, want violated then recovered", n)
	}
}

// replicateFile takes a snapshot of an image file.
func replicateFile(t *testing.T, r *repo.Repository, vm, img string) (*repo.Snapshot, error) {
	t.Helper()
	return replicate.Run(t.Context(), r, replicate.Options{VM: vm, Disks: []replicate.Disk{{Path: img}}})
}

// testutilValue reads one counter of the agent's registry; vm matches
// the vm or plan label ("" = any).
func testutilValue(ag *Agent, name, vm, result string) float64 {
	mfs, err := ag.Registry().Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if (vm == "" || labels["vm"] == vm || labels["plan"] == vm) && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestAgentScheduledDrill: a drill in the config runs on its schedule,
// leaves its record in the repository and reports in the metrics.
func TestAgentScheduledDrill(t *testing.T) {
	dir, open := testRepo(t, nil)
	img := filepath.Join(t.TempDir(), "db.img")
	testimg.Write(t, img, 1<<20, 3)
	r, err := open(t.Context(), config.Repository{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replicateFile(t, r, "db", img); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(planFile, []byte("name: nightly\naccel: tcg\ngroups: [{name: g, vms: [{vm: db, memory_mib: 64}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig(t, fmt.Sprintf("repository: %s\nagent: {prune: \"off\"}\ndrills:\n  - plan: %s\n    schedule: \"*/3 * * * * *\"\n", dir, planFile))
	ag, err := New(Options{Config: cfg, Site: "dr", Open: open, StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := startAgent(t, ag)
	waitFor(t, "a drill to pass", 30*time.Second, func() bool { return testutilValue(ag, "drctl_drills_total", "", "passed") >= 1 })
	stop()
	refs, err := os.ReadDir(filepath.Join(dir, "drills", "nightly"))
	if err != nil || len(refs) < 1 {
		t.Fatalf("drill records: %v %v", refs, err)
	}
}

// TestAgentOverrun: a run that takes longer than its schedule's period is
// not started again while it runs; the skipped slots are counted.
func TestAgentOverrun(t *testing.T) {
	var running, most atomic.Int32
	dir, open := testRepo(t, func(tg targets.Target) targets.Target {
		f := targets.NewFaulty(tg)
		// Each commit takes 2.5 s: the every-second schedule overruns.
		f.Add(targets.Fault{Ops: []targets.Op{targets.OpPutIfAbsent}, KeyPrefix: "snapshots/", Delay: 2500 * time.Millisecond})
		return &countingPuts{Target: f, running: &running, most: &most}
	})
	img := filepath.Join(t.TempDir(), "db.img")
	testimg.Write(t, img, 1<<20, 4)
	cfg := loadConfig(t, fmt.Sprintf("repository: %s\nagent: {prune: \"off\"}\nvms:\n  db:\n    disks: [{path: %s}]\n    schedule: \"* * * * * *\"\n", dir, img))
	ag, err := New(Options{Config: cfg, Site: "primary", Open: open, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := startAgent(t, ag)
	// A reload while a run is under way must not start a second one.
	for range 3 {
		time.Sleep(2 * time.Second)
		if err := ag.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	stop()
	ok, skipped := testutilValue(ag, "drctl_vm_replications_total", "db", "ok"), testutilValue(ag, "drctl_vm_replications_total", "db", "skipped")
	t.Logf("in 7 s: %v runs, %v slots skipped, at most %d commits at once", ok, skipped, most.Load())
	if skipped < 3 || ok < 1 || ok > 3 || most.Load() != 1 {
		t.Fatalf("%v runs, %v skipped, %d concurrent commits", ok, skipped, most.Load())
	}
}

// countingPuts tracks how many snapshot commits run at once.
type countingPuts struct {
	targets.Target
	running, most *atomic.Int32
}

func (c *countingPuts) PutIfAbsent(ctx context.Context, key string, data []byte) (targets.ObjectInfo, error) {
	if strings.HasPrefix(key, "snapshots/") {
		n := c.running.Add(1)
		defer c.running.Add(-1)
		for {
			m := c.most.Load()
			if n <= m || c.most.CompareAndSwap(m, n) {
				break
			}
		}
	}
	return c.Target.PutIfAbsent(ctx, key, data)
}

// TestAgentRepoStatsBetweenScans checks the repository gauges move with
// each commit and each retention between the periodic scans (here never
// repeated), and agree with a fresh scan of the same repository.
func TestAgentRepoStatsBetweenScans(t *testing.T) {
	img := filepath.Join(t.TempDir(), "a.img")
	testimg.Write(t, img, 4<<20, 1)
	imgB := filepath.Join(t.TempDir(), "b.img")
	testimg.Write(t, imgB, 1<<20, 2)
	dir, open := testRepo(t, nil)
	cfg := loadConfig(t, fmt.Sprintf(`
repository: %s
agent: {prune: "off"}
vms:
  a:
    disks: [{path: %s}]
    schedule: "@hourly"
    keep: {last: 2}
  b:
    disks: [{path: %s}]
    schedule: "@hourly"
`, dir, img, imgB))
	ag, err := New(Options{Config: cfg, Site: "primary", Host: "hv1", Open: open,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), StatsEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := ag.scanRepo(ctx, dir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ag.Handler())
	defer srv.Close()
	gauges := func() (size, logical float64) {
		m := scrape(t, srv.URL)
		return metric(t, m, `drctl_repository_size_bytes{repository="`+dir+`"}`),
			metric(t, m, `drctl_repository_logical_bytes{repository="`+dir+`"}`)
	}
	if size, logical := gauges(); size != 0 || logical != 0 {
		t.Fatalf("empty repository: size %v logical %v", size, logical)
	}
	for i := range 4 {
		testimg.Scatter(t, img, 20, uint64(10+i))
		if err := ag.RunOnce(ctx, false); err != nil {
			t.Fatal(err)
		}
		size, logical := gauges()
		// A fresh agent scans the repository from nothing: the live
		// figures must agree with it (size up to pack headers and index).
		fresh, err := New(Options{Config: cfg, Site: "primary", Host: "hv1", Open: open,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.scanRepo(ctx, dir); err != nil {
			t.Fatal(err)
		}
		fsrv := httptest.NewServer(fresh.Handler())
		fm := scrape(t, fsrv.URL)
		fsrv.Close()
		wantSize := metric(t, fm, `drctl_repository_size_bytes{repository="`+dir+`"}`)
		wantLogical := metric(t, fm, `drctl_repository_logical_bytes{repository="`+dir+`"}`)
		t.Logf("run %d: size %v (scan %v), logical %v (scan %v)", i, size, wantSize, logical, wantLogical)
		if logical != wantLogical {
			t.Fatalf("run %d: logical bytes %v, a scan says %v", i, logical, wantLogical)
		}
		if size <= 0 || size > wantSize || size < wantSize*0.9 {
			t.Fatalf("run %d: size %v, a scan says %v", i, size, wantSize)
		}
		m := scrape(t, srv.URL)
		if a, b := metric(t, m, `drctl_vm_snapshots{vm="a"}`), metric(t, m, `drctl_vm_snapshots{vm="b"}`); a != float64(min(i+1, 2)) || b != float64(i+1) {
			t.Fatalf("run %d: snapshots a=%v (keep last 2) b=%v (no keep rules)", i, a, b)
		}
	}
}

// TestAgentReloadRepositories checks a reload that moves a VM to a new
// repository opens it (a repository is opened by its settings, not its
// name), and that a reload naming a password file that cannot be read is
// refused before anything changes.
func TestAgentReloadRepositories(t *testing.T) {
	img := filepath.Join(t.TempDir(), "a.img")
	testimg.Write(t, img, 4<<20, 1)
	dirs := [2]string{}
	for i := range dirs {
		dirs[i], _ = testRepo(t, nil)
	}
	open := func(ctx context.Context, rc config.Repository) (*repo.Repository, error) {
		lt, err := local.New(rc.URL)
		if err != nil {
			return nil, err
		}
		return repo.Open(ctx, lt, "pw", repo.Options{})
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFor := func(url, pw string) *config.Config {
		return loadConfig(t, fmt.Sprintf(`
repositories:
  offsite: {url: %s, password_file: %s}
agent: {prune: "off"}
vms:
  a:
    repository: offsite
    disks: [{path: %s}]
    schedule: "* * * * * *"
`, url, pw, img))
	}
	count := func(dir string) int {
		lt, err := local.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Open(t.Context(), lt, "pw", repo.Options{})
		if err != nil {
			t.Fatal(err)
		}
		refs, err := r.ListSnapshots(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		return len(refs)
	}
	ag, err := New(Options{Config: cfgFor(dirs[0], pwFile), Site: "primary", Open: open, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, ag)
	waitFor(t, "a snapshot in the first repository", 20*time.Second, func() bool { return count(dirs[0]) > 0 })

	if err := ag.Reload(cfgFor(dirs[1], pwFile)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a snapshot in the repository the reload moved the VM to", 20*time.Second, func() bool { return count(dirs[1]) > 0 })

	err = ag.Reload(cfgFor(dirs[0], filepath.Join(t.TempDir(), "missing")))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("reload with an unreadable password file: %v, want a refusal naming the file", err)
	}
	n := count(dirs[1])
	waitFor(t, "a snapshot under the config kept after the refusal", 20*time.Second, func() bool { return count(dirs[1]) > n })
}

// TestAgentGroup runs a consistency group of two running guests on the
// agent's schedule: every run snapshots both at one instant (one group id
// for the pair), retention keeps what each VM's rules say, and the
// metrics count both VMs.
func TestAgentGroup(t *testing.T) {
	var vms [2]*testvm.VM
	for i := range vms {
		vm, err := testvm.Start(t.Context(), t, testvm.Options{Mode: testvm.ModeScatter, ScatterRate: 20, Disks: []testvm.Disk{{Size: 8 << 20}}})
		if err != nil {
			t.Fatal(err)
		}
		vms[i] = vm
	}
	dir, open := testRepo(t, nil)
	cfg := loadConfig(t, fmt.Sprintf(`
repository: %s
agent: {prune: "off"}
vms:
  app:
    qmp: %s
    group: shop
    schedule: "*/3 * * * * *"
    keep: {last: 2}
  db:
    qmp: %s
    group: shop
    keep: {last: 3}
`, dir, vms[0].QMPSocket(), vms[1].QMPSocket()))
	ag, err := New(Options{Config: cfg, Site: "primary", Host: "hv1", Open: open, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ag.Handler())
	defer srv.Close()
	stop := startAgent(t, ag)
	waitFor(t, "4 runs of the group", 90*time.Second, func() bool { return testutilValue(ag, "drctl_vm_replications_total", "db", "ok") >= 4 })
	stop()

	r, err := open(t.Context(), config.Repository{})
	if err != nil {
		t.Fatal(err)
	}
	groupIDs := map[string][]string{} // group id -> VMs
	counts := map[string]int{}
	for _, vm := range []string{"app", "db"} {
		refs, err := r.ListSnapshots(t.Context(), vm)
		if err != nil {
			t.Fatal(err)
		}
		counts[vm] = len(refs)
		for _, ref := range refs {
			s, err := r.LoadSnapshot(t.Context(), ref)
			if err != nil {
				t.Fatal(err)
			}
			var gid string
			for _, tag := range s.Tags {
				if v, ok := strings.CutPrefix(tag, "group-id="); ok {
					gid = v
				}
			}
			if gid == "" || !slices.Contains(s.Tags, "group=shop") {
				t.Fatalf("%s snapshot %s: tags %v, want group=shop and a group id", vm, ref.ID[:8], s.Tags)
			}
			groupIDs[gid] = append(groupIDs[gid], vm)
		}
	}
	if counts["app"] != 2 || counts["db"] != 3 {
		t.Fatalf("kept app %d (keep last 2), db %d (keep last 3)", counts["app"], counts["db"])
	}
	// The two newest runs kept both VMs: their ids pair up.
	pairs := 0
	for gid, members := range groupIDs {
		slices.Sort(members)
		if slices.Equal(members, []string{"app", "db"}) {
			pairs++
		} else if len(members) != 1 || members[0] != "db" {
			t.Fatalf("group id %s holds %v", gid, members)
		}
	}
	if pairs != 2 {
		t.Fatalf("%d group ids shared by app and db, want 2: %v", pairs, groupIDs)
	}
	m := scrape(t, srv.URL)
	if a, d := metric(t, m, `drctl_vm_replications_total{result="ok", vm="app"}`), metric(t, m, `drctl_vm_replications_total{result="ok", vm="db"}`); a != d {
		t.Fatalf("runs: app %v, db %v: a group replicates together", a, d)
	}
	if v := metric(t, m, `drctl_vm_snapshots{vm="db"}`); v != 3 {
		t.Fatalf("snapshots of db: %v", v)
	}
}
