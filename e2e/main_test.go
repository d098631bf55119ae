// Package e2e runs the built drctl binary against real targets: a local
// directory and a real S3 server (versitygw) on 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/internal/testimg"
)

var (
	drctlBin string
	s3srv    *s3test.Server
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "drctl-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	drctlBin = filepath.Join(dir, "drctl")
	build := exec.Command("go", "build", "-o", drctlBin, "../cmd/drctl")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build drctl:", err)
		return 1
	}
	s3srv, err = s3test.StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e tests need a real S3 server:", err)
		return 1
	}
	defer s3srv.Stop()
	return m.Run()
}

// env is a test's environment for drctl.
type env struct {
	t    *testing.T
	dir  string
	vars []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	return &env{t: t, dir: dir, vars: []string{
		"HOME=" + dir,
		"PATH=" + os.Getenv("PATH"),
		"DRCTL_PASSWORD=correct horse",
		"DRCTL_STATE_DIR=" + filepath.Join(dir, "state"),
		"AWS_ACCESS_KEY_ID=" + s3srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s3srv.SecretKey,
	}}
}

func (e *env) set(kv string) {
	k, _, _ := strings.Cut(kv, "=")
	out := e.vars[:0]
	for _, v := range e.vars {
		if !strings.HasPrefix(v, k+"=") {
			out = append(out, v)
		}
	}
	e.vars = append(out, kv)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs drctl and returns its output and exit code.
func (e *env) run(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, drctlBin, args...)
	cmd.Dir = e.dir
	cmd.Env = e.vars
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run drctl %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs drctl and fails the test unless it succeeds.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("drctl %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// fails runs drctl and checks the exit code and that stderr mentions want.
func (e *env) fails(code int, want string, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("drctl %s: want exit %d and %q in stderr, got %s", strings.Join(args, " "), code, want, r)
	}
	return r
}

// s3Repo makes a fresh bucket and returns a repository URL in it.
// restoreSame restores vm's latest snapshot from repo and checks that its
// disk named like img holds exactly img's bytes.
func (e *env) restoreSame(repo, vm, img string) {
	e.t.Helper()
	out := e.t.TempDir()
	e.ok("restore", "-r", repo, "--vm", vm, "--target", out)
	sameFile(e.t, img, filepath.Join(out, filepath.Base(img)))
}

func (e *env) s3Repo() string {
	e.t.Helper()
	return "s3:" + s3srv.Endpoint + "/" + s3srv.NewBucket(e.t) + "/repo"
}

// makeImage writes a sparse disk image with random, text and zero regions.
func makeImage(t *testing.T, path string, size int64, seed uint64) {
	testimg.Write(t, path, size, seed)
}

// scatter overwrites n random 4 KiB blocks with random data.
func scatter(t *testing.T, path string, n int, seed uint64) { testimg.Scatter(t, path, n, seed) }

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}
