package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type snapshotRow struct {
	ID     string `json:"id"`
	VM     string `json:"vm"`
	Parent string `json:"parent"`
	Disks  []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	} `json:"disks"`
}

type summary struct {
	MessageType   string `json:"message_type"`
	SnapshotID    string `json:"snapshot_id"`
	BytesRead     int64  `json:"bytes_read"`
	BytesChanged  int64  `json:"bytes_changed"`
	BytesNew      int64  `json:"bytes_new"`
	BytesStored   int64  `json:"bytes_stored"`
	BytesUploaded int64  `json:"bytes_uploaded"`
	Requests      int64  `json:"requests"`
}

// lastSummary parses the final JSON line of a --json run.
func lastSummary(t *testing.T, r result) summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var s summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil || s.MessageType != "summary" {
		t.Fatalf("no summary in output (%v): %s", err, r)
	}
	return s
}

func snapshots(t *testing.T, e *env, repo string, extra ...string) []snapshotRow {
	t.Helper()
	r := e.ok(append([]string{"snapshots", "-r", repo, "--json"}, extra...)...)
	var rows []snapshotRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("parse snapshots: %v\n%s", err, r)
	}
	return rows
}

// TestReplicateRestore is the main path on both kinds of target: two disks,
// a full and an incremental snapshot, restore of each, verify.
func TestReplicateRestore(t *testing.T) {
	for _, kind := range []string{"local", "s3"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			repo := filepath.Join(e.dir, "repo")
			if kind == "s3" {
				repo = e.s3Repo()
			}
			root := filepath.Join(e.dir, "root.img")
			data := filepath.Join(e.dir, "data.img")
			makeImage(t, root, 48<<20, 1)
			makeImage(t, data, 16<<20+512, 2)
			e.ok("init", "-r", repo)

			s1 := lastSummary(t, e.ok("replicate", "-r", repo, "--vm", "web1", "--disk", root, "--disk", "data="+data, "--json"))
			saved := filepath.Join(e.dir, "root.v1")
			copyFile(t, root, saved)

			scatter(t, root, 120, 3) // ~1%
			s2 := lastSummary(t, e.ok("replicate", "-r", repo, "--vm", "web1", "--disk", root, "--disk", "data="+data, "--json"))
			if s2.BytesChanged > 120*4096 || s2.BytesChanged == 0 {
				t.Fatalf("incremental changed bytes = %d, want (0, %d]", s2.BytesChanged, 120*4096)
			}
			if s2.BytesUploaded > s1.BytesUploaded/4 {
				t.Fatalf("incremental uploaded %d bytes, full %d: not incremental", s2.BytesUploaded, s1.BytesUploaded)
			}

			rows := snapshots(t, e, repo, "--vm", "web1")
			if len(rows) != 2 || rows[1].Parent != rows[0].ID || len(rows[1].Disks) != 2 {
				t.Fatalf("snapshots = %+v", rows)
			}

			out := filepath.Join(e.dir, "out")
			e.ok("restore", "-r", repo, "--vm", "web1", "--snapshot", "latest", "--target", out)
			sameFile(t, root, filepath.Join(out, "root.img"))
			sameFile(t, data, filepath.Join(out, "data"))
			if _, err := os.Stat(filepath.Join(out, "web1.json")); err != nil {
				t.Fatalf("no vm spec: %v", err)
			}

			old := filepath.Join(e.dir, "old")
			e.ok("restore", "-r", repo, "--vm", "web1", "--snapshot", rows[0].ID[:8], "--target", old)
			sameFile(t, saved, filepath.Join(old, "root.img"))

			// A second restore into the same place refuses to overwrite.
			e.fails(1, "already exists", "restore", "-r", repo, "--vm", "web1", "--target", out)
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentVMs: two replications of different VMs into one repository
// at the same time both succeed.
func TestConcurrentVMs(t *testing.T) {
	e := newEnv(t)
	repo := e.s3Repo()
	e.ok("init", "-r", repo)
	imgs := []string{filepath.Join(e.dir, "a.img"), filepath.Join(e.dir, "b.img")}
	for i, p := range imgs {
		makeImage(t, p, 24<<20, uint64(10+i))
	}
	var wg sync.WaitGroup
	res := make([]result, 2)
	for i := range imgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = e.run("replicate", "-r", repo, "--vm", []string{"vma", "vmb"}[i], "--disk", imgs[i])
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.code != 0 {
			t.Fatalf("replicate %d: %s", i, r)
		}
	}
	for i, vm := range []string{"vma", "vmb"} {
		out := filepath.Join(e.dir, "out-"+vm)
		e.ok("restore", "-r", repo, "--vm", vm, "--target", out)
		sameFile(t, imgs[i], filepath.Join(out, filepath.Base(imgs[i])))
	}
}

// TestConfigFile: VMs and repositories named in drctl.yaml need no flags.
func TestConfigFile(t *testing.T) {
	e := newEnv(t)
	img := filepath.Join(e.dir, "web1.img")
	makeImage(t, img, 8<<20, 5)
	pwFile := filepath.Join(e.dir, "pw")
	os.WriteFile(pwFile, []byte("from the file\n"), 0o600)
	cfg := `repository: offsite
repositories:
  offsite:
    url: ` + e.s3Repo() + `
    password_file: ` + pwFile + `
vms:
  web1:
    disks:
      - path: ` + img + `
        name: root
`
	os.WriteFile(filepath.Join(e.dir, "drctl.yaml"), []byte(cfg), 0o600)
	e.set("DRCTL_PASSWORD=")
	e.ok("init")
	e.ok("replicate", "--vm", "web1")
	out := filepath.Join(e.dir, "out")
	e.ok("restore", "--vm", "web1", "--target", out)
	sameFile(t, img, filepath.Join(out, "root"))

	// A typo in the config is a usage error naming the key.
	os.WriteFile(filepath.Join(e.dir, "drctl.yaml"), []byte(strings.Replace(cfg, "disks:", "disk:", 1)), 0o600)
	e.fails(2, "vms.web1.disk", "replicate", "--vm", "web1")
}
