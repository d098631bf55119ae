package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// envMap returns an env lookup backed by m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeFile writes content to dir/name with mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadString writes content as drctl.yaml (mode 0600) in a temp dir and loads it.
func loadString(t *testing.T, content string, env map[string]string) (*Config, error) {
	t.Helper()
	p := writeFile(t, t.TempDir(), FileName, content, 0o600)
	return Load(p, envMap(env))
}

const fullConfig = `# sample
repository: offsite
repositories:
  offsite:
    url: s3:http://127.0.0.1:9000/bucket/prefix
    password_file: offsite.pass
    access_key_id: AKIAEXAMPLE
    secret_access_key: secret
    region: eu-west-1
  local:
    url: repo
    password: demo
vms:
  web1:
    disks:
      - path: /var/lib/vms/web1-root.img
        name: root
      - path: /dev/vg0/web1-data
    schedule: "*/15 * * * *"
    keep: {last: 10, hourly: 24, daily: 7, weekly: 4, monthly: 6}
  Db.Prod:
    repository: local
    disks:
      - path: images/db.qcow2
    schedule: "@every 30m"
log_level: debug
`

func TestLoadFull(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, FileName, fullConfig, 0o600)
	writeFile(t, dir, "offsite.pass", "s3cret pass\n", 0o600)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != p || c.Repository != "offsite" || c.LogLevel != "debug" {
		t.Errorf("File=%q Repository=%q LogLevel=%q", c.File, c.Repository, c.LogLevel)
	}
	if got, want := c.VMNames(), []string{"Db.Prod", "web1"}; !slices.Equal(got, want) {
		t.Errorf("VMNames = %v, want %v (names must keep case and dots)", got, want)
	}
	web, err := c.VM("web1")
	if err != nil {
		t.Fatal(err)
	}
	wantDisks := []Disk{{Path: "/var/lib/vms/web1-root.img", Name: "root"}, {Path: "/dev/vg0/web1-data", Name: "web1-data"}}
	if !slices.Equal(web.Disks, wantDisks) {
		t.Errorf("web1 disks = %+v, want %+v", web.Disks, wantDisks)
	}
	if web.Name != "web1" || web.Repository != "offsite" || web.Schedule != "*/15 * * * *" {
		t.Errorf("web1 = %+v", web)
	}
	if web.Keep == nil || *web.Keep != (Keep{Last: 10, Hourly: 24, Daily: 7, Weekly: 4, Monthly: 6}) {
		t.Errorf("web1 keep = %+v", web.Keep)
	}
	db, err := c.VM("Db.Prod")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "images", "db.qcow2"); db.Disks[0].Path != want || db.Disks[0].Name != "db.qcow2" {
		t.Errorf("db disk = %+v, want path %s (relative to the config file)", db.Disks[0], want)
	}
	if db.Repository != "local" || db.Keep != nil {
		t.Errorf("db = %+v", db)
	}

	r, err := c.ResolveRepository(web.Repository)
	if err != nil {
		t.Fatal(err)
	}
	want := Repository{Name: "offsite", URL: "s3:http://127.0.0.1:9000/bucket/prefix", Password: "s3cret pass",
		PasswordSource: "password_file " + filepath.Join(dir, "offsite.pass"),
		AccessKeyID:    "AKIAEXAMPLE", SecretAccessKey: "secret", Region: "eu-west-1"}
	if r != want {
		t.Errorf("ResolveRepository(offsite) =\n %+v, want\n %+v", r, want)
	}
	r, err = c.ResolveRepository("local")
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != filepath.Join(dir, "repo") || r.Password != "demo" {
		t.Errorf("ResolveRepository(local) = %+v, want URL relative to config dir and password demo", r)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "repositories.local.password: a password in the config file is discouraged") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error; "FILE" is replaced by the file path
	}{
		{"missing disk path", "vms:\n  web1:\n    disks:\n      - name: root\n",
			[]string{"FILE:4: vms.web1.disks[0].path: missing: set the image file or block device to replicate"}},
		{"unknown key with suggestion", "vms:\n  web1:\n    disk:\n      - path: /a\n",
			[]string{"FILE:3: vms.web1.disk: unknown key (did you mean disks?)"}},
		{"unknown key case", "vms:\n  web1:\n    Disks: [{path: /a}]\n", []string{"vms.web1.Disks: unknown key (did you mean disks?)"}},
		{"unknown top-level key", "repositorys: {}\n", []string{"FILE:1: repositorys: unknown key (did you mean repositories?)"}},
		{"unknown key lists known", "vms:\n  web1:\n    disks: [{path: /a, flavour: x}]\n",
			[]string{"vms.web1.disks[0].flavour: unknown key: known keys here are name, path"}},
		{"malformed yaml", "vms:\n  web1:\n    disks: [\n  x: y: z\n", []string{"FILE:", "invalid YAML"}},
		{"mapping values", "vms:\n  web1: disks: x\n", []string{"FILE:2: invalid YAML: mapping values are not allowed", "check the indentation"}},
		{"tab indentation", "vms:\n\tweb1:\n", []string{"FILE:2: invalid YAML", "tabs"}},
		{"unquoted cron", "vms:\n  web1:\n    disks: [{path: /a}]\n    schedule: */15 * * * *\n", []string{"FILE:4: invalid YAML", "must be quoted"}},
		{"bad cron", "vms:\n  web1:\n    disks: [{path: /a}]\n    schedule: \"*/15 * * *\"\n",
			[]string{"FILE:4: vms.web1.schedule: \"*/15 * * *\" is not a valid cron schedule (expected 5 to 6 fields"}},
		{"cron out of range", "vms:\n  web1:\n    disks: [{path: /a}]\n    schedule: \"61 * * * *\"\n", []string{"vms.web1.schedule:", "not a valid cron schedule"}},
		{"bad rpo", "vms:\n  web1:\n    disks: [{path: /a}]\n    rpo: soon\n", []string{"FILE:4: vms.web1.rpo: \"soon\" is not a positive duration"}},
		{"bad bool", "vms:\n  web1:\n    qmp: /q\n    pause_when_fenced: yes please\n", []string{"FILE:4: vms.web1.pause_when_fenced: expected true or false"}},
		{"agent settings", "agent:\n  metrics: nine\n  heartbeat: -1s\n  bandwidth: fast\n  webhook: ftp://x\n  prune: sometimes\n  max_jobs: -1\n",
			[]string{"FILE:2: agent.metrics: \"nine\" is not host:port", "FILE:3: agent.heartbeat:", "FILE:4: agent.bandwidth: \"fast\" is not a rate",
				"FILE:5: agent.webhook: \"ftp://x\" is not an http(s) URL", "FILE:6: agent.prune:", "FILE:7: agent.max_jobs: must be 1 or more"}},
		{"group schedules differ", "vms:\n  app:\n    qmp: /a\n    group: shop\n    schedule: \"@hourly\"\n  db:\n    qmp: /d\n    group: shop\n    schedule: \"@daily\"\n",
			[]string{"FILE:9: vms.db.schedule: \"@daily\" differs from vms.app.schedule (\"@hourly\"): the VMs of group shop are snapshotted together, on one schedule"}},
		{"group repositories differ", "repositories:\n  r1: {url: /r1}\n  r2: {url: /r2}\nvms:\n  app:\n    qmp: /a\n    group: shop\n    repository: r1\n  db:\n    qmp: /d\n    group: shop\n    repository: r2\n",
			[]string{"FILE:12: vms.db.repository: \"r2\" differs from the repository of vms.app (\"r1\")"}},
		{"bad vm name", "vms:\n  web 1:\n    disks: [{path: /a}]\n", []string{"FILE:2: vms.web 1: \"web 1\" is not a valid VM name"}},
		{"vm name starting with dash", "vms:\n  -web:\n    disks: [{path: /a}]\n", []string{"vms.-web: \"-web\" is not a valid VM name"}},
		{"bad disk name", "vms:\n  web1:\n    disks: [{path: /a, name: \"a/b\"}]\n", []string{"vms.web1.disks[0].name: \"a/b\" is not a valid disk name"}},
		{"bad default disk name", "vms:\n  web1:\n    disks: [{path: \"/dev/disk/by-id/x:y\"}]\n",
			[]string{"vms.web1.disks[0].name: the default name \"x:y\" (base name of the path) is not valid: set name:"}},
		{"duplicate disk names", "vms:\n  web1:\n    disks:\n      - path: /a/root\n      - path: /b/root\n",
			[]string{"FILE:5: vms.web1.disks[1].name: disk name \"root\" is already used by vms.web1.disks[0] (line 4)"}},
		{"same disk in two vms", "vms:\n  a:\n    disks: [{path: /x.img}]\n  b:\n    disks: [{path: /x.img}]\n",
			[]string{"vms.b.disks[0].path: /x.img is also vms.a.disks[0] (line 3): list each disk once"}},
		{"duplicate key", "vms:\n  web1:\n    disks: [{path: /a}]\n  web1:\n    disks: [{path: /b}]\n",
			[]string{"FILE:4: vms.web1: defined twice (first at line 2): keep one"}},
		{"no disks", "vms:\n  web1:\n    schedule: \"@hourly\"\n", []string{"FILE:2: vms.web1.disks: missing: list the VM's disks"}},
		{"disks not a list", "vms:\n  web1:\n    disks:\n      path: /a\n", []string{"FILE:4: vms.web1.disks: expected a list"}},
		{"disk is a string", "vms:\n  web1:\n    disks: [/a]\n", []string{"vms.web1.disks[0]: expected a mapping of keys (key: value), got \"/a\""}},
		{"keep not a number", "vms:\n  web1:\n    disks: [{path: /a}]\n    keep: {last: ten}\n", []string{"FILE:4: vms.web1.keep.last: expected a whole number, got \"ten\""}},
		{"keep negative", "vms:\n  web1:\n    disks: [{path: /a}]\n    keep: {last: -1, daily: 3}\n", []string{"vms.web1.keep.last: -1 is negative"}},
		{"keep nothing", "vms:\n  web1:\n    disks: [{path: /a}]\n    keep: {last: 0}\n", []string{"vms.web1.keep: keeps no snapshot at all"}},
		{"both passwords", "repositories:\n  r:\n    url: /srv/r\n    password: x\n    password_file: /p\n", []string{"FILE:4: repositories.r.password: both password and password_file are set"}},
		{"key without secret", "repositories:\n  r:\n    url: /srv/r\n    access_key_id: A\n", []string{"repositories.r: access_key_id and secret_access_key go together"}},
		{"missing url", "repositories:\n  r:\n    region: x\n", []string{"FILE:2: repositories.r.url: missing: set where the repository is"}},
		{"s3 url without bucket", "repositories:\n  r:\n    url: \"s3:\"\n", []string{"repositories.r.url: \"s3:\" names no bucket"}},
		{"bad repository name", "repositories:\n  \"a b\":\n    url: /x\n", []string{"repositories.a b: \"a b\" is not a valid repository name"}},
		{"unknown vm repository", "repositories:\n  offsite: {url: /x}\nvms:\n  web1:\n    repository: offsit\n    disks: [{path: /a}]\n",
			[]string{"FILE:5: vms.web1.repository: \"offsit\" is not in repositories (did you mean offsite?) (configured: offsite)"}},
		{"unknown default repository", "repository: nowhere\n", []string{"FILE:1: repository: \"nowhere\" is not in repositories (no repositories are configured)", "./nowhere"}},
		{"bad log level", "log_level: verbose\n", []string{"FILE:1: log_level: \"verbose\" is not a log level: use one of debug, info, warn, error"}},
		{"top level is a list", "- a\n- b\n", []string{"FILE:1: the top level must be a mapping"}},
		{"two documents", "log_level: info\n---\nlog_level: debug\n", []string{"more than one YAML document"}},
		{"url is a list", "repositories:\n  r:\n    url: [a, b]\n", []string{"repositories.r.url: expected a single value, got a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), FileName, tt.yaml, 0o600)
			_, err := Load(p, nil)
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", tt.want)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", p)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
		})
	}
}

func TestLoadReportsAllProblemsInLineOrder(t *testing.T) {
	// Structure problems (unknown keys, wrong types) are reported first;
	// value checks run only on a well-formed file, to avoid follow-on noise.
	_, err := loadString(t, "log_level: loud\nvms:\n  b:\n    disks: [{name: x}]\n  a:\n    keep: {last: x}\n    dsks: []\n", nil)
	if err == nil {
		t.Fatal("want error")
	}
	if want := ":6: vms.a.keep.last: expected a whole number, got \"x\""; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), ":7: vms.a.dsks: unknown key") {
		t.Errorf("structure problems: got\n%v", err)
	}
	_, err = loadString(t, "log_level: loud\nvms:\n  b:\n    disks: [{name: x}]\n  a:\n    schedule: bad\n", nil)
	if err == nil {
		t.Fatal("want error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 problems, got:\n%v", err)
	}
	for i, want := range []string{":1: log_level", ":4: vms.b.disks[0].path", ":5: vms.a.disks: missing", ":6: vms.a.schedule"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], want)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("errors.As(FieldError) failed for %T", err)
	}
}

func TestLoadAnchorsAndMerge(t *testing.T) {
	c, err := loadString(t, `
keep_std: &std {daily: 7, weekly: 4}
vms:
  a:
    disks: [{path: /a}]
    keep: *std
  b:
    disks: [{path: /b}]
    keep:
      <<: *std
      daily: 14
`, nil)
	if err == nil {
		t.Fatalf("an unknown top-level key must still be rejected, got config %+v", c)
	}
	c, err = loadString(t, `
vms:
  a:
    disks: [{path: /a}]
    keep: &std {daily: 7, weekly: 4}
  b:
    disks: [{path: /b}]
    keep:
      <<: *std
      daily: 14
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := *c.VMs["a"].Keep; got != (Keep{Daily: 7, Weekly: 4}) {
		t.Errorf("a keep = %+v", got)
	}
	if got := *c.VMs["b"].Keep; got != (Keep{Daily: 14, Weekly: 4}) {
		t.Errorf("b keep = %+v (explicit keys must win over merged ones)", got)
	}
}

func TestLoadEmptyAndMissing(t *testing.T) {
	for _, content := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c, err := loadString(t, content, nil)
		if err != nil {
			t.Errorf("Load(%q): %v", content, err)
			continue
		}
		if c.LogLevel != "" || c.Level() != slog.LevelInfo || len(c.VMs) != 0 {
			t.Errorf("Load(%q) = %+v", content, c)
		}
	}
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("explicit missing file: err = %v, want not-exist naming the file", err)
	}
	_, err = Load(t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory as config: err = %v", err)
	}
}

func TestLocate(t *testing.T) {
	old := systemConfigFile
	t.Cleanup(func() { systemConfigFile = old })
	root := t.TempDir()
	systemConfigFile = filepath.Join(root, "etc", FileName)
	cwd := filepath.Join(root, "cwd")
	home := filepath.Join(root, "home")
	xdg := filepath.Join(root, "xdg")
	for _, d := range []string{cwd, home, xdg} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(cwd)
	env := map[string]string{"HOME": home}

	c, err := Load("", envMap(env))
	if err != nil || c.File != "" {
		t.Fatalf("no file anywhere: File=%q err=%v", c.File, err)
	}
	if want := []string{FileName, filepath.Join(home, ".config", "drctl", FileName), systemConfigFile}; !slices.Equal(c.Searched, want) {
		t.Errorf("Searched = %q, want %q", c.Searched, want)
	}
	if _, err := c.VM("x"); err == nil || !strings.Contains(err.Error(), "no config file found; looked for drctl.yaml") {
		t.Errorf("VM on empty config: %v", err)
	}

	steps := []struct {
		name string
		file string // created before the step
		env  map[string]string
		want string
	}{
		{"system", systemConfigFile, env, systemConfigFile},
		{"home", filepath.Join(home, ".config", "drctl", FileName), env, filepath.Join(home, ".config", "drctl", FileName)},
		{"xdg replaces ~/.config", filepath.Join(xdg, "drctl", FileName), map[string]string{"HOME": home, "XDG_CONFIG_HOME": xdg}, filepath.Join(xdg, "drctl", FileName)},
		{"cwd", filepath.Join(cwd, FileName), env, FileName},
		{"DRCTL_CONFIG", filepath.Join(root, "other.yaml"), map[string]string{"HOME": home, EnvConfig: filepath.Join(root, "other.yaml")}, filepath.Join(root, "other.yaml")},
	}
	for _, s := range steps {
		writeFile(t, filepath.Dir(s.file), filepath.Base(s.file), "log_level: warn\n", 0o600)
		c, err := Load("", envMap(s.env))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if c.File != s.want || c.LogLevel != "warn" {
			t.Errorf("%s: File = %q (level %s), want %q", s.name, c.File, c.LogLevel, s.want)
		}
	}
	explicit := writeFile(t, root, "explicit.yaml", "log_level: error\n", 0o600)
	c, err = Load(explicit, envMap(map[string]string{EnvConfig: filepath.Join(root, "other.yaml")}))
	if err != nil || c.File != explicit {
		t.Errorf("--config must win over DRCTL_CONFIG: File=%q err=%v", c.File, err)
	}
}

func TestEnvOverrides(t *testing.T) {
	const yml = "repository: a\nrepositories:\n  a: {url: /srv/a, password: pa}\n  b: {url: /srv/b, password_file: /nonexistent/pass}\nlog_level: info\n"
	dir := t.TempDir()
	passFile := writeFile(t, dir, "env.pass", "from-env-file\r\n", 0o600)
	tests := []struct {
		name       string
		env        map[string]string
		ref        string
		wantURL    string
		wantPass   string
		wantSource string
		wantErr    string
	}{
		{name: "file defaults", ref: "", wantURL: "/srv/a", wantPass: "pa", wantSource: "password in "},
		{name: "DRCTL_REPOSITORY name", env: map[string]string{EnvRepository: "b", EnvPassword: "x"}, wantURL: "/srv/b", wantPass: "x", wantSource: EnvPassword},
		{name: "DRCTL_REPOSITORY url", env: map[string]string{EnvRepository: "s3:http://h:1/bkt"}, wantURL: "s3:http://h:1/bkt"},
		{name: "flag beats env", env: map[string]string{EnvRepository: "b"}, ref: "a", wantURL: "/srv/a", wantPass: "pa", wantSource: "password in "},
		{name: "DRCTL_PASSWORD beats config", env: map[string]string{EnvPassword: " spaced "}, wantURL: "/srv/a", wantPass: " spaced ", wantSource: EnvPassword},
		{name: "DRCTL_PASSWORD_FILE", env: map[string]string{EnvPasswordFile: passFile}, ref: "b", wantURL: "/srv/b", wantPass: "from-env-file", wantSource: EnvPasswordFile + " " + passFile},
		{name: "DRCTL_PASSWORD_FILE missing", env: map[string]string{EnvPasswordFile: "/nonexistent/env.pass"}, wantErr: "environment: DRCTL_PASSWORD_FILE: cannot read password file /nonexistent/env.pass: no such file or directory"},
		{name: "config password_file missing", ref: "b", wantErr: ":4: repositories.b.password_file: cannot read password file /nonexistent/pass: no such file or directory: create it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadString(t, yml, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.ResolveRepository(tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.URL != tt.wantURL || r.Password != tt.wantPass || !strings.HasPrefix(r.PasswordSource, tt.wantSource) {
				t.Errorf("got URL=%q Password=%q Source=%q, want %q %q %q", r.URL, r.Password, r.PasswordSource, tt.wantURL, tt.wantPass, tt.wantSource)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := loadString(t, "", map[string]string{EnvPassword: "a", EnvPasswordFile: "/b"})
	if err == nil || !strings.Contains(err.Error(), "both DRCTL_PASSWORD and DRCTL_PASSWORD_FILE are set") {
		t.Errorf("both password vars: %v", err)
	}
	_, err = loadString(t, "", map[string]string{EnvLogLevel: "loud"})
	if err == nil || !strings.Contains(err.Error(), "environment: DRCTL_LOG_LEVEL: \"loud\" is not a log level") {
		t.Errorf("bad DRCTL_LOG_LEVEL: %v", err)
	}
	c, err := loadString(t, "log_level: error\n", map[string]string{EnvLogLevel: "debug"})
	if err != nil || c.LogLevel != "debug" || c.Level().String() != "DEBUG" {
		t.Errorf("DRCTL_LOG_LEVEL override: %v %+v", err, c)
	}
}

func TestResolveRepository(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "empty.pass", "\n", 0o600)
	writeFile(t, dir, "big.pass", strings.Repeat("x", maxPasswordFile+1), 0o600)
	p := writeFile(t, dir, FileName, `repositories:
  offsite: {url: s3:h/b, password_file: empty.pass}
  big: {url: /b, password_file: big.pass}
  plain: {url: ./plain}
`, 0o600)
	c, err := Load(p, envMap(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref     string
		want    Repository
		wantErr string
	}{
		{ref: "", wantErr: ErrNoRepository.Error()},
		{ref: "plain", want: Repository{Name: "plain", URL: filepath.Join(dir, "plain")}},
		{ref: "/srv/repo", want: Repository{URL: "/srv/repo"}},
		{ref: "~/repo", want: Repository{URL: "/home/u/repo"}},
		{ref: "backups", want: Repository{URL: "backups"}},
		{ref: "s3:http://127.0.0.1:9000/b", want: Repository{URL: "s3:http://127.0.0.1:9000/b"}},
		{ref: "ofsite", wantErr: "repository ofsite is not in the config (" + p + ") (did you mean offsite?); for a local directory named ofsite, write ./ofsite"},
		{ref: "offsite", wantErr: "empty.pass: is empty"},
		{ref: "big", wantErr: "too big for a password file"},
	}
	for _, tt := range tests {
		r, err := c.ResolveRepository(tt.ref)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ResolveRepository(%q) err = %v, want %q", tt.ref, err, tt.wantErr)
			}
			continue
		}
		if err != nil || r != tt.want {
			t.Errorf("ResolveRepository(%q) = %+v, %v; want %+v", tt.ref, r, err, tt.want)
		}
	}
	if _, err := c.ResolveRepository(""); !errors.Is(err, ErrNoRepository) {
		t.Errorf("want ErrNoRepository, got %v", err)
	}
}

func TestSingleRepositoryIsDefault(t *testing.T) {
	c, err := loadString(t, "repositories:\n  only: {url: /srv/only}\nvms:\n  web1:\n    disks: [{path: /a}]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := c.VM("web1")
	if err != nil || vm.Repository != "only" {
		t.Fatalf("VM = %+v, %v; want repository only", vm, err)
	}
	r, err := c.ResolveRepository("")
	if err != nil || r.URL != "/srv/only" || r.Password != "" || r.PasswordSource != "" {
		t.Errorf("ResolveRepository(\"\") = %+v, %v", r, err)
	}
}

func TestVMNotFound(t *testing.T) {
	c, err := loadString(t, "vms:\n  web1: {disks: [{path: /a}]}\n  web2: {disks: [{path: /b}]}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.VM("web3")
	want := "vm web3 is not in the config (" + c.File + ") (did you mean web1?); known VMs: web1, web2"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
	_, err = c.VM("mail")
	if err == nil || !strings.HasSuffix(err.Error(), "); known VMs: web1, web2") || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("err = %v", err)
	}
	vm, _ := c.VM("web1")
	vm.Disks[0].Path = "/changed"
	if again, _ := c.VM("web1"); again.Disks[0].Path != "/a" {
		t.Error("VM must return a copy of the disks")
	}
}

func TestSecretWarnings(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, FileName, "repositories:\n  r: {url: s3:h/b, access_key_id: A, secret_access_key: S}\n", 0o644)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "other users can read it (mode 0644): run chmod 600") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(p, nil); err != nil || len(c.Warnings) != 0 {
		t.Errorf("mode 0600: Warnings = %q, err %v", c.Warnings, err)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"disks", "repository", "schedule", "keep"}
	tests := map[string]string{"disk": "disks", "Disks": "disks", "shedule": "schedule", "repo": "", "x": "", "kep": "keep", "keeep": "keep"}
	for word, want := range tests {
		if got := suggest(word, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

func TestParentKey(t *testing.T) {
	for in, want := range map[string]string{"vms.web1.disks[0].path": "vms.web1.disks[0]", "vms.web1.disks[0]": "vms.web1.disks", "vms": ""} {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExampleFileIsValid(t *testing.T) {
	c, err := Load("drctl.example.yaml", nil)
	if err != nil {
		t.Fatalf("the example shipped with drctl must load: %v", err)
	}
	if got := c.VMNames(); !slices.Equal(got, []string{"db1", "web1"}) {
		t.Errorf("VMNames = %v", got)
	}
	if k := c.VMs["db1"].Keep; k == nil || k.Daily != 14 || k.Last != 10 {
		t.Errorf("db1 keep = %+v", k)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestRepositoryPathsInFileAreRelativeToIt(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "etc"), FileName, `repository: ../default-repo
vms:
  a:
    repository: ./a-repo
    disks: [{path: ~/a.img}]
  b:
    repository: s3:http://127.0.0.1:9000/b
    disks: [{path: /b.img}]
`, 0o600)
	c, err := Load(p, envMap(map[string]string{"HOME": "/home/u"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "default-repo"); c.Repository != want {
		t.Errorf("Repository = %q, want %q", c.Repository, want)
	}
	a, _ := c.VM("a")
	if want := filepath.Join(dir, "etc", "a-repo"); a.Repository != want || a.Disks[0].Path != "/home/u/a.img" {
		t.Errorf("vm a = %+v, want repository %s and disk /home/u/a.img", a, want)
	}
	b, _ := c.VM("b")
	if b.Repository != "s3:http://127.0.0.1:9000/b" {
		t.Errorf("vm b repository = %q: URLs must stay as written", b.Repository)
	}
	c, err = Load(p, envMap(map[string]string{EnvRepository: "rel/repo"}))
	if err != nil || c.Repository != "rel/repo" {
		t.Errorf("DRCTL_REPOSITORY must stay relative to the working directory: %q, %v", c.Repository, err)
	}
}
