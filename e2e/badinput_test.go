package e2e

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// TestBadInput: each mistake gets its exit code and a message that says
// what failed and what to do.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	repo := filepath.Join(e.dir, "repo")
	img := filepath.Join(e.dir, "a.img")
	makeImage(t, img, 4<<20, 1)

	e.fails(10, "drctl init", "snapshots", "-r", repo)
	e.ok("init", "-r", repo)
	e.fails(11, "already exists", "init", "-r", repo)
	e.ok("replicate", "-r", repo, "--vm", "a", "--disk", img)

	wrong := *e
	wrong.vars = append([]string(nil), e.vars...)
	wrong.set("DRCTL_PASSWORD=not it")
	wrong.fails(12, "wrong password", "snapshots", "-r", repo)
	wrong.set("DRCTL_PASSWORD=")
	wrong.fails(12, "no password", "snapshots", "-r", repo)

	e.fails(15, "no such snapshot", "restore", "-r", repo, "--vm", "a", "--snapshot", "deadbeef", "--target", filepath.Join(e.dir, "o"))
	e.fails(15, "no snapshots", "restore", "-r", repo, "--vm", "nosuchvm", "--target", filepath.Join(e.dir, "o"))
	e.fails(1, "does not exist", "replicate", "-r", repo, "--vm", "a", "--disk", filepath.Join(e.dir, "missing.img"))
	e.fails(2, "--vm", "replicate", "-r", repo)
	e.fails(2, "unknown flag", "replicate", "-r", repo, "--vmm", "a")

	// A shrunk disk is refused unless asked for.
	os.Truncate(img, 2<<20)
	e.fails(1, "--allow-shrink", "replicate", "-r", repo, "--vm", "a", "--disk", img)

	// S3: missing bucket, bad credentials, unreachable endpoint.
	e.fails(14, "nosuchbucket", "init", "-r", "s3:"+s3srv.Endpoint+"/nosuchbucket/x")
	bad := *e
	bad.vars = append([]string(nil), e.vars...)
	bad.set("AWS_SECRET_ACCESS_KEY=wrong")
	bad.fails(14, "denied", "init", "-r", e.s3Repo())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	e.fails(13, addr, "init", "--retries", "2", "-r", "s3:http://"+addr+"/bucket")

	// Malformed config.
	os.WriteFile(filepath.Join(e.dir, "drctl.yaml"), []byte("vms: [unclosed\n"), 0o600)
	e.fails(2, "drctl.yaml", "snapshots", "-r", repo)
}
