package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/drctl/drctl/config"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

var errNoPassword = errors.New("no password given: set DRCTL_PASSWORD or DRCTL_PASSWORD_FILE, use --password-file, or set password_file in drctl.yaml")

// app holds what every command shares: flags, streams, config, logger.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)

	// global flags
	repoFlag     string
	configFlag   string
	passwordFile string
	jsonOut      bool
	verbose      bool
	quiet        bool
	logLevel     string
	siteFlag     string
	cpuProfile   string
	retries      int
	memProfile   string
	stopProfile  func()

	cfg *config.Config
	log *slog.Logger
	// level is the logger's level: the agent raises its default, and a
	// config reload changes it.
	level   slog.LevelVar
	counter *targets.Counting // requests of the open target, for --verbose
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, env func(string) (string, bool)) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: env}
}

func (a *app) execute(ctx context.Context, args []string) error {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	defer func() {
		if a.stopProfile != nil {
			a.stopProfile()
		}
		if a.memProfile != "" {
			if f, err := os.Create(a.memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
	return root.ExecuteContext(ctx)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "drctl",
		Short: "Offsite disaster recovery for virtual machines",
		Long: `drctl replicates VMs (running QEMU VMs, image files, block devices) into an
encrypted, deduplicated repository on a local directory or an S3-compatible
bucket, restores any recovery point byte for byte, fails the VMs over at a
recovery site when the primary is lost (with fencing against split brain),
proves the recovery plan with isolated drills, and runs all of it on
schedules as an agent.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVarP(&a.repoFlag, "repo", "r", "", "repository: a directory, s3:http[s]://host[:port]/bucket[/prefix], s3:aws/bucket[/prefix], or a name from drctl.yaml (env DRCTL_REPOSITORY)")
	f.StringVar(&a.configFlag, "config", "", "config file (default ./drctl.yaml, then ~/.config/drctl/drctl.yaml, then /etc/drctl/drctl.yaml)")
	f.StringVar(&a.passwordFile, "password-file", "", "read the repository password from this file (env DRCTL_PASSWORD_FILE)")
	f.BoolVar(&a.jsonOut, "json", false, "print results and errors as JSON")
	f.BoolVarP(&a.verbose, "verbose", "v", false, "print more, including the requests made to the target")
	f.BoolVarP(&a.quiet, "quiet", "q", false, "print only errors")
	f.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn, error (default from config, else warn; info for the agent daemon)")
	f.StringVar(&a.siteFlag, "site", "", "name of this site in fence records and heartbeats (env DRCTL_SITE, config site:; default the host name)")
	f.IntVar(&a.retries, "retries", 0, "attempts per target request before giving up (default 10, over up to 5 minutes)")
	f.StringVar(&a.cpuProfile, "cpu-profile", "", "write a CPU profile to this file (for performance reports)")
	_ = f.MarkHidden("cpu-profile")
	f.StringVar(&a.memProfile, "mem-profile", "", "write a heap profile to this file at exit")
	_ = f.MarkHidden("mem-profile")
	root.AddCommand(
		a.initCommand(),
		a.replicateCommand(),
		a.snapshotsCommand(),
		a.restoreCommand(),
		a.verifyCommand(),
		a.forgetCommand(),
		a.pruneCommand(),
		a.keyCommand(),
		a.repairCommand(),
		a.planCommand(),
		a.failoverCommand(),
		a.statusCommand(),
		a.stopReplicasCommand(),
		a.drillCommand(),
		a.drillsCommand(),
		a.agentCommand(),
		a.versionCommand(),
	)
	return root
}

// setup loads the config and makes the logger, before any command runs.
func (a *app) setup(cmd *cobra.Command) error {
	if a.cpuProfile != "" {
		f, err := os.Create(a.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		a.stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	cfg, err := config.Load(a.configFlag, a.lookupEnv)
	if err != nil {
		return err
	}
	a.cfg = cfg
	level, err := a.logLevelFor(cfg, slog.LevelWarn)
	if err != nil {
		return err
	}
	a.level.Set(level)
	opts := &slog.HandlerOptions{Level: &a.level}
	if a.jsonOut {
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	} else {
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	}
	for _, w := range cfg.Warnings {
		a.log.Warn(w)
	}
	return nil
}

// logLevelFor is the log level the flags, then the config, ask for; def
// when neither does.
func (a *app) logLevelFor(cfg *config.Config, def slog.Level) (slog.Level, error) {
	level := def
	if cfg.LogLevel != "" {
		level = cfg.Level()
	}
	if a.logLevel != "" {
		if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
			return level, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", a.logLevel)}
		}
	} else if a.verbose && level > slog.LevelInfo {
		level = slog.LevelInfo
	}
	return level, nil
}

// repository resolves which repository to use and its password.
func (a *app) repository() (config.Repository, error) {
	rc, err := a.cfg.ResolveRepository(a.repoFlag)
	if err != nil {
		return rc, err
	}
	if a.passwordFile != "" {
		b, err := os.ReadFile(a.passwordFile)
		if err != nil {
			return rc, usageError{fmt.Errorf("--password-file: %w", err)}
		}
		rc.Password = strings.TrimRight(string(b), "\r\n")
		rc.PasswordSource = "--password-file " + a.passwordFile
	}
	return rc, nil
}

// password returns the configured password, or asks on a terminal.
func (a *app) password(rc config.Repository, confirm bool) (string, error) {
	if rc.Password != "" {
		return rc.Password, nil
	}
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errNoPassword
	}
	fmt.Fprintf(a.stderr, "password for %s: ", rc.URL)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if confirm {
		fmt.Fprint(a.stderr, "enter it again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p) != string(p2) {
			return "", usageError{errors.New("the passwords do not match")}
		}
	}
	if len(p) == 0 {
		return "", errNoPassword
	}
	return string(p), nil
}

// target opens the storage of rc, wrapped with retries and request
// counting.
func (a *app) target(ctx context.Context, rc config.Repository, create bool) (targets.Target, error) {
	t, err := a.openTarget(ctx, rc, create, a.log)
	if err != nil {
		return nil, err
	}
	a.counter = targets.NewCounting(t)
	return a.counter, nil
}

func (a *app) repoOptions() repo.Options {
	return repo.Options{WriterID: a.writerID(), Logger: a.log}
}

// openRepo opens the repository for a command.
func (a *app) openRepo(ctx context.Context) (*repo.Repository, error) {
	rc, err := a.repository()
	if err != nil {
		return nil, err
	}
	t, err := a.target(ctx, rc, false)
	if err != nil {
		return nil, err
	}
	pw, err := a.password(rc, false)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, t, pw, a.repoOptions())
	if errors.Is(err, repo.ErrWrongPassword) && rc.PasswordSource != "" {
		return nil, fmt.Errorf("%w (password from %s)", err, rc.PasswordSource)
	}
	return r, err
}

// site is this site's name: --site, then DRCTL_SITE or site: in the
// config, then the host name.
func (a *app) site() (string, error) {
	s := a.siteFlag
	if s == "" && a.cfg != nil {
		s = a.cfg.Site
	}
	if s == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no site name: set --site or site: in drctl.yaml (host name unavailable: %w)", err)
		}
		s, _, _ = strings.Cut(h, ".")
	}
	if !repo.NameRE.MatchString(s) {
		return "", usageError{fmt.Errorf("site name %q: use letters, digits, '.', '_' and '-'", s)}
	}
	return s, nil
}

// writerID is this machine's persisted random writer id (never the host
// name, which changes and collides). Without a writable state directory a
// random id per run is used: correct, only less tidy object names.
func (a *app) writerID() string {
	dir := a.stateDir()
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, "writer-id")
	read := func() string {
		b, err := os.ReadFile(p)
		if id := strings.TrimSpace(string(b)); err == nil && len(id) >= 8 && len(id) <= 32 && repo.NameRE.MatchString(id) {
			return id
		}
		return ""
	}
	if id := read(); id != "" {
		return id
	}
	// Created whole and exclusively (temp file, then a hard link that
	// fails if the name exists): two drctl starting at once on a fresh
	// machine must agree on one id, or a killed run's uploads would not
	// be recognised as this machine's by the next one.
	id := newWriterID()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return id
	}
	tmp, err := os.CreateTemp(dir, ".writer-id-*")
	if err != nil {
		return id
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(id + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if lerr := os.Link(tmp.Name(), p); lerr != nil {
			if other := read(); other != "" {
				return other // another drctl won the race
			}
			_ = os.Rename(tmp.Name(), p) // a damaged file: replace it
		}
	}
	return id
}

// stateDir is where drctl keeps small per-machine state (writer id, verify
// cursor): $DRCTL_STATE_DIR, else $XDG_STATE_HOME/drctl, else
// ~/.local/state/drctl.
func (a *app) stateDir() string {
	if d, ok := a.lookupEnv("DRCTL_STATE_DIR"); ok && d != "" {
		return d
	}
	if d, ok := a.lookupEnv("XDG_STATE_HOME"); ok && d != "" {
		return filepath.Join(d, "drctl")
	}
	if h, ok := a.lookupEnv("HOME"); ok && h != "" {
		return filepath.Join(h, ".local", "state", "drctl")
	}
	return ""
}

// printJSON writes one JSON value on a line of stdout.
func (a *app) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = fmt.Fprintln(a.stdout, string(b))
	return err
}

// printf writes human output unless --quiet or --json.
func (a *app) printf(format string, args ...any) {
	if a.quiet || a.jsonOut {
		return
	}
	fmt.Fprintf(a.stdout, format, args...)
}

// printRequests prints the target requests made, with --verbose: the
// request count is what an S3 bill counts.
func (a *app) printRequests() {
	if !a.verbose || a.jsonOut || a.counter == nil {
		return
	}
	fmt.Fprintf(a.stderr, "target requests:\n%s", a.counter.Snapshot())
}

func (a *app) printError(err error, code int) {
	if a.jsonOut {
		b, _ := json.Marshal(map[string]any{"message_type": "error", "error": err.Error(), "exit_code": code})
		fmt.Fprintln(a.stderr, string(b))
		return
	}
	fmt.Fprintf(a.stderr, "drctl: %v\n", err)
}
