// Package s3test runs a real S3 server (versitygw, posix backend) for
// tests, and a flaky HTTP proxy to put in front of it.
//
// One server per test binary is the usual set-up, from TestMain:
//
//	var srv *s3test.Server
//
//	func TestMain(m *testing.M) {
//		var err error
//		if srv, err = s3test.StartServer(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		srv.Stop()
//		os.Exit(code)
//	}
//
// and each test takes a fresh bucket with srv.NewBucket(t), or one with
// Object Lock enabled (and so versioning) with srv.NewLockedBucket(t).
// Start(t) gives a test its own server instead (starting takes about
// 0.1 s); StartWith(t, Options{...}) one set up differently.
//
// A missing binary fails the tests, it never skips them: a suite that
// silently skips its S3 half looks green and proves nothing.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/syncbuf"
)

// Timeouts of the server's life cycle.
const (
	readyTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is the base URL, http://127.0.0.1:PORT.
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	// Root is the directory holding the buckets.
	Root string

	base    string   // temporary directory of this server
	args    []string // the command line, for Up
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	output  *syncbuf.Buffer
	buckets atomic.Int64
	stop    sync.Once
}

// Options change how a server is started. The zero value is what Start
// and StartServer use.
type Options struct {
	// NoVersioning starts versitygw without a versioning directory: its
	// buckets cannot be versioned, and one with Object Lock then refuses
	// to delete or overwrite a retained object outright, where a
	// versioned bucket (and Amazon S3, which requires versioning for
	// Object Lock) adds a delete marker or a new version.
	NoVersioning bool
}

// Start starts a server for one test and stops it when the test ends. It
// fails the test if the server cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := StartServerWith(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop S3 server: %v", err)
		}
	})
	return s
}

// StartServer starts a server in a new temporary directory. The caller
// must call Stop.
func StartServer() (*Server, error) {
	return StartServerWith(Options{})
}

// StartServerWith is StartServer with options.
func StartServerWith(o Options) (*Server, error) {
	bin, err := FindBinary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port can be taken between choosing and binding it
		s, err := start(bin, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin string, o Options) (*Server, error) {
	base, err := os.MkdirTemp("", "drctl-s3test-")
	if err != nil {
		return nil, fmt.Errorf("start S3 server: %w", err)
	}
	s := &Server{
		AccessKey: "drctltestkey",
		SecretKey: "drctltestsecret" + randomHex(8),
		Region:    "us-east-1",
		Root:      filepath.Join(base, "root"),
		base:      base,
		output:    &syncbuf.Buffer{},
	}
	versions := filepath.Join(base, "versions")
	for _, d := range []string{s.Root, versions} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(base)
			return nil, fmt.Errorf("start S3 server: %w", err)
		}
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("start S3 server: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s.Endpoint = "http://" + addr
	// --keep-alive: the server's default closes every connection, which
	// makes many small requests several times slower.
	args := []string{"--access", s.AccessKey, "--secret", s.SecretKey,
		"--port", addr, "--region", s.Region, "--quiet", "--keep-alive", "posix"}
	if !o.NoVersioning {
		args = append(args, "--versioning-dir", versions)
	}
	s.args = append([]string{bin}, append(args, s.Root)...)
	if err := s.launch(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// launch starts the server process with s.args.
func (s *Server) launch() error {
	s.exited = make(chan struct{})
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	cmd.Env = cleanEnv()
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start S3 server %s: %w", s.args[0], err)
	}
	s.cmd = cmd
	exited := s.exited
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	return nil
}

// Down kills the server as a crash or a power cut would, keeping its
// data: clients get "connection refused" until Up.
func (s *Server) Down() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Up starts a server that Down stopped, on the same address and data.
func (s *Server) Up() error {
	var err error
	for range 50 { // the port may linger a moment after the kill
		if err = s.launch(); err == nil {
			if err = s.waitReady(); err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restart S3 server: %w", err)
}

// waitReady polls until the server answers HTTP (an anonymous GET / gets
// 403 once it is up).
func (s *Server) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("S3 server exited at start (%v); its output:\n%s", s.waitErr, s.output)
		default:
		}
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("S3 server not answering on %s after %s; its output:\n%s", s.Endpoint, readyTimeout, s.output)
}

// Stop ends the server (SIGTERM, then SIGKILL after a few seconds) and
// removes its directory. It may be called more than once.
func (s *Server) Stop() error {
	var err error
	s.stop.Do(func() {
		if s.cmd.Process != nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(stopTimeout):
				s.cmd.Process.Kill()
				<-s.exited
			}
		}
		err = os.RemoveAll(s.base)
	})
	return err
}

// Output is what the server printed so far, for failure messages.
func (s *Server) Output() string { return s.output.String() }

// NewBucket creates a bucket with a fresh name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.newBucket(t, false)
}

// NewLockedBucket creates a bucket with Object Lock enabled (as
// x-amz-bucket-object-lock-enabled: true does) and a fresh name, and
// returns the name. On a server with versioning, which is the default,
// versitygw turns versioning on with it, as Amazon S3 does. The bucket has
// no default retention: objects are locked only when written with
// retention.
func (s *Server) NewLockedBucket(t testing.TB) string {
	t.Helper()
	return s.newBucket(t, true)
}

func (s *Server) newBucket(t testing.TB, lock bool) string {
	t.Helper()
	name := fmt.Sprintf("drctl-%d-%s", s.buckets.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := createBucket(ctx, s, name, lock); err != nil {
		t.Fatalf("create bucket %s at %s: %v", name, s.Endpoint, err)
	}
	return name
}

// CreateBucket creates the named bucket.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	if err := createBucket(ctx, s, name, false); err != nil {
		return fmt.Errorf("create bucket %s at %s: %w", name, s.Endpoint, err)
	}
	return nil
}

// FindBinary locates versitygw: $DRCTL_VERSITYGW, then .tools/bin in the
// module root (where make installs it), then $PATH.
func FindBinary() (string, error) {
	var tried []string
	if p := os.Getenv("DRCTL_VERSITYGW"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p+" (from DRCTL_VERSITYGW)")
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "versitygw")
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	tried = append(tried, "versitygw in $PATH")
	return "", fmt.Errorf("the S3 test server versitygw was not found (tried %s): run `make test`, which installs it, or set DRCTL_VERSITYGW",
		strings.Join(tried, ", "))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cleanEnv is the environment without the variables versitygw reads for
// its root credentials and back ends, so the flags alone configure it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ROOT_") && !strings.HasPrefix(kv, "VGW_") {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
