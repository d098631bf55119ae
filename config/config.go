// Package config loads drctl.yaml and the DRCTL_* environment overrides
// into typed, validated settings.
//
// Where the file is: the path given to Load (the --config flag), else
// $DRCTL_CONFIG, else the first that exists of ./drctl.yaml,
// $XDG_CONFIG_HOME/drctl/drctl.yaml (~/.config/drctl/drctl.yaml when
// XDG_CONFIG_HOME is unset) and /etc/drctl/drctl.yaml. No file at all is
// fine: repositories can then be given as URLs or paths.
//
// Precedence, highest first:
//   - repository: the -r/--repo flag (passed to ResolveRepository), the
//     VM's own repository:, DRCTL_REPOSITORY, the top-level repository:,
//     and finally the only entry of repositories: if there is just one.
//   - password: DRCTL_PASSWORD or DRCTL_PASSWORD_FILE (setting both is an
//     error), then the repository's password_file, then its password.
//   - S3 credentials: access_key_id/secret_access_key from the repository
//     entry when set; when not set they stay empty and the S3 target falls
//     back to the AWS default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
//     ~/.aws/credentials, instance roles). Explicit config wins over the
//     environment because it is the more specific of the two: it names one
//     repository, the environment applies to all of them.
//   - log_level: DRCTL_LOG_LEVEL, then log_level:; unset is "".
//   - site: DRCTL_SITE, then site:; unset is "" (the host name is used).
//
// Relative paths in the file (password_file, disk paths, local repository
// paths) are relative to the directory of the file; a leading ~/ means the
// home directory.
//
// The file is decoded strictly: unknown keys, wrong types, duplicate keys
// and invalid values are errors that name the file, line, key and fix.
//
// Why not viper: viper lowercases map keys and splits them on dots, so the
// VM "Web1" would become "web1" and "db.prod" a nested "db: {prod: ...}";
// it loses line numbers, and it reads the process environment directly.
// VM names are identifiers stored in the repository, so they must survive
// exactly as written, and errors must point at a line.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/drctl/drctl/internal/yamlstrict"
	"go.yaml.in/yaml/v3"
)

// FileName is the name of the configuration file drctl looks for.
const FileName = "drctl.yaml"

// systemConfigFile is the last place Load looks; a variable for tests.
var systemConfigFile = "/etc/drctl/drctl.yaml"

// Config is drctl.yaml after validation, with environment overrides applied.
type Config struct {
	// File is the path of the file read, or "" when none was found.
	File string
	// Searched lists where Load looked when no path was given.
	Searched []string
	// Repository is the default repository: a name from Repositories or a
	// URL/path. DRCTL_REPOSITORY overrides the file.
	Repository   string
	Repositories map[string]RepositoryConfig
	VMs          map[string]VM
	// LogLevel is debug, info, warn or error; "" when neither the file nor
	// DRCTL_LOG_LEVEL sets it, so the caller picks its own default.
	LogLevel string
	// Site names this site in fence records and heartbeats (DRCTL_SITE,
	// then site:); "" means the caller's default, the host name.
	Site string
	// Agent configures `drctl agent`.
	Agent Agent
	// Drills are DR drills the agent runs on schedules.
	Drills []Drill
	// Warnings are problems that do not stop drctl, such as a password
	// stored in a file others can read. The caller should log them.
	Warnings []string

	env      overrides
	problems *yamlstrict.Problems // key lines, for errors found after Load
}

// RepositoryConfig is one entry of repositories: in drctl.yaml.
type RepositoryConfig struct {
	URL             string `yaml:"url"`
	Password        string `yaml:"password"`
	PasswordFile    string `yaml:"password_file"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	Region          string `yaml:"region"`

	// ObjectLock asks for S3 Object Lock retention (repository.go);
	// nil: none.
	ObjectLock *ObjectLock `yaml:"object_lock"`
}

// VM is one entry of vms: in drctl.yaml.
type VM struct {
	Name       string `yaml:"-"`
	Repository string `yaml:"repository"` // name or URL; "" = the default
	Disks      []Disk `yaml:"disks"`
	// QMP is a running QEMU VM's QMP socket reserved for drctl; with it,
	// the VM's disks come from QEMU and Disks must be empty.
	QMP string `yaml:"qmp"`
	// QGA is the host socket of the VM's guest agent, for app-consistent
	// snapshots (optional, with QMP).
	QGA string `yaml:"qga"`
	// Group names a consistency group: `drctl replicate --group NAME`
	// snapshots all its VMs at one instant (they need qmp:).
	Group string `yaml:"group"`
	// Firmware is bios or uefi, recorded for the recovery side when QEMU
	// cannot tell (it detects OVMF loaded as flash or -bios); "" = detect.
	Firmware string `yaml:"firmware"`
	// PauseWhenFenced pauses the running VM when a replication finds that
	// the VM was failed over to another site: two running copies of a VM
	// (split brain) are worse than a paused one.
	PauseWhenFenced bool   `yaml:"pause_when_fenced"`
	Schedule        string `yaml:"schedule"` // cron, 5 fields or 6 with seconds first, or @descriptor; "" = none
	// RPO is the recovery point objective, a Go duration ("15m"): the
	// agent alerts when the newest snapshot is older. "" = no target.
	RPO  string `yaml:"rpo"`
	Keep *Keep  `yaml:"keep"` // nil = keep every snapshot
}

// Disk is one disk of a VM.
type Disk struct {
	Path string `yaml:"path"` // image file or block device
	Name string `yaml:"name"` // defaults to the base name of Path
}

// Keep is a retention policy: how many of the newest snapshots to keep in
// total and per hour/day/week/month/year. Zero means no rule of that kind.
type Keep struct {
	Last    int `yaml:"last"`
	Hourly  int `yaml:"hourly"`
	Daily   int `yaml:"daily"`
	Weekly  int `yaml:"weekly"`
	Monthly int `yaml:"monthly"`
	Yearly  int `yaml:"yearly"`
}

// fileConfig is the layout of drctl.yaml.
type fileConfig struct {
	Repository   string                      `yaml:"repository"`
	Repositories map[string]RepositoryConfig `yaml:"repositories"`
	VMs          map[string]VM               `yaml:"vms"`
	LogLevel     string                      `yaml:"log_level"`
	Site         string                      `yaml:"site"`
	Agent        Agent                       `yaml:"agent"`
	Drills       []Drill                     `yaml:"drills"`
}

// overrides are the DRCTL_* environment values Load read.
type overrides struct {
	repository   string
	password     string
	passwordFile string
	logLevel     string
	site         string
	home         string
}

// Env names read by Load.
const (
	EnvConfig       = "DRCTL_CONFIG"
	EnvRepository   = "DRCTL_REPOSITORY"
	EnvPassword     = "DRCTL_PASSWORD"
	EnvPasswordFile = "DRCTL_PASSWORD_FILE"
	EnvLogLevel     = "DRCTL_LOG_LEVEL"
	EnvSite         = "DRCTL_SITE"
)

// Load finds, reads and validates the configuration. path is the --config
// flag ("" to search); env looks up environment variables (os.LookupEnv in
// main, a map in tests; nil means an empty environment). A missing file is
// not an error unless path or DRCTL_CONFIG named it.
func Load(path string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	ov := readOverrides(env)
	file, searched, err := locate(path, env, ov.home)
	if err != nil {
		return nil, err
	}
	c := &Config{File: file, Searched: searched, env: ov, problems: yamlstrict.NewProblems(displayName(file))}
	if file != "" {
		if err := c.readFile(file); err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.resolvePaths()
	if err := c.applyOverrides(); err != nil {
		return nil, err
	}
	return c, nil
}

func readOverrides(env func(string) (string, bool)) overrides {
	get := func(name string) string {
		v, _ := env(name)
		return v
	}
	return overrides{
		repository:   strings.TrimSpace(get(EnvRepository)),
		password:     get(EnvPassword), // as is: spaces can be part of a password
		passwordFile: strings.TrimSpace(get(EnvPasswordFile)),
		logLevel:     strings.TrimSpace(get(EnvLogLevel)),
		site:         strings.TrimSpace(get(EnvSite)),
		home:         get("HOME"),
	}
}

// locate returns the config file to read ("" for none) and the places
// searched.
func locate(path string, env func(string) (string, bool), home string) (string, []string, error) {
	if path == "" {
		if v, ok := env(EnvConfig); ok && v != "" {
			path = v
		}
	}
	if path != "" {
		if err := checkFile(path); err != nil {
			return "", nil, fmt.Errorf("open config file %s: %w", path, err)
		}
		return path, nil, nil
	}
	searched := searchPaths(env, home)
	for _, p := range searched {
		err := checkFile(p)
		if err == nil {
			return p, searched, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", searched, fmt.Errorf("open config file %s: %w", p, err)
		}
	}
	return "", searched, nil
}

func searchPaths(env func(string) (string, bool), home string) []string {
	paths := []string{FileName}
	if x, _ := env("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		paths = append(paths, filepath.Join(x, "drctl", FileName))
	} else if home != "" {
		paths = append(paths, filepath.Join(home, ".config", "drctl", FileName))
	}
	return append(paths, systemConfigFile)
}

// checkFile returns nil if p exists and is not a directory.
func checkFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("is a directory, not a %s file", FileName)
	}
	return nil
}

func displayName(file string) string {
	if file == "" {
		return "config"
	}
	return file
}

// readFile parses and strictly decodes file into c.
func (c *Config) readFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read config file %s: %w", file, err)
	}
	root, err := configSyntax.Parse(file, data)
	if err != nil || root == nil {
		return err
	}
	var fc fileConfig
	p := c.problems
	if root.Kind != yaml.MappingNode && !yamlstrict.IsNull(root) {
		p.AddAt(root.Line, "", "the top level must be a mapping of settings (repository:, repositories:, vms:, log_level:, site:, agent:, drills:), got %s", yamlstrict.Describe(root))
		return p.Err()
	}
	yamlstrict.NewDecoder(p).Decode(root, "", reflect.ValueOf(&fc).Elem())
	if err := p.Err(); err != nil {
		return err
	}
	c.Repository, c.Repositories, c.VMs, c.LogLevel, c.Site, c.Agent, c.Drills = fc.Repository, fc.Repositories, fc.VMs, fc.LogLevel, fc.Site, fc.Agent, fc.Drills
	c.warnSecrets(file)
	return nil
}

// configSyntax words YAML syntax errors for drctl.yaml; its hints
// name the settings people get wrong there, such as cron schedules.
var configSyntax = yamlstrict.Syntax{
	MultiDoc: "more than one YAML document (---): put all settings in one document",
	Hint:     syntaxHint,
}

func syntaxHint(data []byte, line int, msg string) string {
	switch {
	case strings.Contains(msg, "alias") || strings.Contains(msg, "did not find expected alphabetic or numeric character"):
		if text := yamlstrict.LineText(data, line); strings.Contains(text, ": *") || strings.Contains(text, "- *") {
			return " (a value starting with * must be quoted, e.g. schedule: \"*/15 * * * *\")"
		}
	case strings.Contains(msg, "mapping values are not allowed"):
		return " (check the indentation, and quote values that contain \": \")"
	}
	return ""
}

func (c *Config) warnSecrets(file string) {
	fi, err := os.Stat(file)
	if err != nil {
		return
	}
	mode := fi.Mode().Perm()
	for _, name := range yamlstrict.SortedKeys(c.Repositories) {
		r := c.Repositories[name]
		key := "repositories." + name
		if r.Password != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: %s.password: a password in the config file is discouraged: use password_file (mode 0600) or DRCTL_PASSWORD_FILE",
				file, c.problems.LineOf(key+".password"), key))
		}
		if (r.Password != "" || r.SecretAccessKey != "") && mode&0o077 != 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: holds secrets of %s but other users can read it (mode %04o): run chmod 600 %s",
				file, key, mode, file))
		}
	}
}

func (c *Config) applyOverrides() error {
	if c.env.repository != "" {
		c.Repository = c.env.repository
	}
	if c.env.logLevel != "" {
		if !slices.Contains(logLevels, c.env.logLevel) {
			return &FieldError{File: "environment", Key: EnvLogLevel,
				Problem: fmt.Sprintf("%q is not a log level: use one of %s", c.env.logLevel, strings.Join(logLevels, ", "))}
		}
		c.LogLevel = c.env.logLevel
	}
	if c.env.site != "" {
		if !namePattern.MatchString(c.env.site) {
			return &FieldError{File: "environment", Key: EnvSite, Problem: fmt.Sprintf("%q is not a valid site name: %s", c.env.site, nameRule)}
		}
		c.Site = c.env.site
	}
	if c.env.password != "" && c.env.passwordFile != "" {
		return &FieldError{File: "environment", Key: EnvPassword,
			Problem: "both DRCTL_PASSWORD and DRCTL_PASSWORD_FILE are set: unset one of them"}
	}
	return nil
}

var logLevels = []string{"debug", "info", "warn", "error"}

// Level returns LogLevel as a slog.Level (info when unset).
func (c *Config) Level() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// GroupVMs returns the VMs of a consistency group, sorted by name.
func (c *Config) GroupVMs(group string) []VM {
	var out []VM
	for _, name := range c.VMNames() {
		if vm, err := c.VM(name); err == nil && vm.Group == group {
			out = append(out, vm)
		}
	}
	return out
}

// VMNames returns the names of the configured VMs, sorted.
func (c *Config) VMNames() []string {
	return yamlstrict.SortedKeys(c.VMs)
}

// VM returns the named VM. Its Repository is the VM's own repository, or
// the default one when it has none (which may be "").
func (c *Config) VM(name string) (VM, error) {
	vm, ok := c.VMs[name]
	if !ok {
		return VM{}, fmt.Errorf("vm %s is not in the config (%s)%s; %s", name, c.whereFrom(), yamlstrict.DidYouMean(name, c.VMNames()), c.knownVMs())
	}
	vm.Name = name
	if vm.Repository == "" {
		vm.Repository = c.defaultRepository()
	}
	vm.Disks = slices.Clone(vm.Disks)
	return vm, nil
}

func (c *Config) knownVMs() string {
	if len(c.VMs) == 0 {
		return "no VMs are configured: add them under vms:"
	}
	return "known VMs: " + strings.Join(c.VMNames(), ", ")
}

func (c *Config) whereFrom() string {
	if c.File != "" {
		return c.File
	}
	if len(c.Searched) == 0 {
		return "no config file"
	}
	return "no config file found; looked for " + strings.Join(c.Searched, ", ")
}

func (c *Config) defaultRepository() string {
	if c.Repository != "" {
		return c.Repository
	}
	if len(c.Repositories) == 1 {
		for name := range c.Repositories {
			return name
		}
	}
	return ""
}
