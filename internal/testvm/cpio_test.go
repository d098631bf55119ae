package testvm

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// busybox's cpio, an independent implementation, reads the archive.
func TestCpioReadable(t *testing.T) {
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.dir("bin")
	c.file("bin/hello", 0o755, []byte("hello, world\n")) // 13 bytes: needs padding
	c.symlink("bin/hi", "hello")
	c.charDev("console", 0o600, 5, 1)
	c.file("a/long-name-to-shift-the-padding", 0o644, nil)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", buf.Len())
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Fatal(missingf("busybox: %w", err))
	}
	cmd := exec.Command(bb, "cpio", "-t", "-v")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{
		"drwxr-xr-x", " bin\n",
		"-rwxr-xr-x", "13 ", " bin/hello\n",
		"lrwxrwxrwx", " bin/hi -> hello\n",
		"crw-------", " console\n",
		" a/long-name-to-shift-the-padding\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
}
