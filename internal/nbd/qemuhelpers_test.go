package nbd

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers for the tests that run QEMU's tools: starting its NBD servers,
// making images with known contents, and comparing ranges.

// requireTools fails the test unless the named programs are installed.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := "qemu-utils"
			if tool == "qemu-storage-daemon" {
				pkg = "qemu-system-common, pulled in by qemu-system-x86"
			}
			t.Fatalf("%s is not installed: the NBD tests run QEMU's NBD server (Debian package %s); "+
				"`make test` installs it, or run scripts/install-deps.sh", tool, pkg)
		}
	}
}

// runTool runs a program and fails the test if it fails.
func runTool(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// qemuNBD serves image read-only as export "disk" on a unix socket until
// the test ends, and returns the socket's path.
func qemuNBD(t testing.TB, image, format string, extra ...string) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	args := []string{"--persistent", "--shared=16", "--read-only", "--socket=" + sock,
		"--format=" + format, "--export-name=disk"}
	serveQEMU(t, sock, "qemu-nbd", append(append(args, extra...), image)...)
	return sock
}

// storageDaemon exports a qcow2 image read-only as "disk", with the given
// bitmaps, from qemu-storage-daemon: the same block-export-add an NBD
// export of a running VM goes through. It returns the socket's path.
func storageDaemon(t testing.TB, image string, bitmaps ...string) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	export := "type=nbd,id=exp0,node-name=disk0,name=disk,writable=off"
	for i, b := range bitmaps {
		export += fmt.Sprintf(",bitmaps.%d=%s", i, b)
	}
	serveQEMU(t, sock, "qemu-storage-daemon",
		"--blockdev", "driver=file,filename="+image+",node-name=file0",
		"--blockdev", "driver=qcow2,file=file0,node-name=disk0",
		"--nbd-server", "addr.type=unix,addr.path="+sock,
		"--export", export)
	return sock
}

// serveQEMU runs a QEMU NBD server until the test ends, and waits until
// it listens on sock.
func serveQEMU(t testing.TB, sock, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s %s exited: %v\n%s", name, strings.Join(args, " "), waitErr, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within 10 s", name, sock)
		}
	}
}

// write is data put into a test image at a known place.
type write struct {
	off, len int64
	pattern  byte
}

// qemuImage makes a qcow2 image of size bytes and writes into it through
// qemu-io, QEMU's block layer (which also updates enabled persistent
// dirty bitmaps). It returns the path and the expected contents.
func qemuImage(t testing.TB, dir string, size int64, writes []write) (string, []byte) {
	t.Helper()
	img := filepath.Join(dir, "disk.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, fmt.Sprint(size))
	want := make([]byte, size)
	qemuWrite(t, img, want, writes)
	return img, want
}

// qemuWrite writes into img through qemu-io and records it in want.
func qemuWrite(t testing.TB, img string, want []byte, writes []write) {
	t.Helper()
	if len(writes) == 0 {
		return
	}
	args := []string{"-f", "qcow2"}
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write -P %#x %d %d", w.pattern, w.off, w.len))
		copy(want[w.off:w.off+w.len], bytes.Repeat([]byte{w.pattern}, int(w.len)))
	}
	runTool(t, "qemu-io", append(args, img)...)
}

// roundOut returns the writes' ranges widened to multiples of unit, sorted
// and merged.
func roundOut(writes []write, unit int64) []Range {
	var out []Range
	for _, w := range writes {
		r := Range{Off: w.off - w.off%unit}
		r.Len = alignUp(w.off+w.len, unit) - r.Off
		out = append(out, r)
	}
	return mergeRanges(out)
}

// mergeRanges sorts ranges and joins those that touch or overlap.
func mergeRanges(rs []Range) []Range {
	rs = append([]Range(nil), rs...)
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Off < rs[j-1].Off; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && r.Off <= out[n-1].End() {
			out[n-1].Len = max(out[n-1].End(), r.End()) - out[n-1].Off
			continue
		}
		out = append(out, r)
	}
	return out
}

// complement returns what rs (sorted, merged) leave of [0, size).
func complement(rs []Range, size int64) []Range {
	var out []Range
	at := int64(0)
	for _, r := range rs {
		if r.Off > at {
			out = append(out, Range{at, r.Off - at})
		}
		at = r.End()
	}
	if at < size {
		out = append(out, Range{at, size - at})
	}
	return out
}

func rangesEqual(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// covers says whether r lies inside one of rs.
func covers(rs []Range, r Range) bool {
	for _, x := range rs {
		if x.Off <= r.Off && r.End() <= x.End() {
			return true
		}
	}
	return false
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
