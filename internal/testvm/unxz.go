package testvm

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
)

// xzMagic starts an xz stream.
var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// xzDecode decompresses an xz stream with xz-utils. Debian's kernels and
// modules use xz with the x86 BCJ filter, which no maintained pure-Go xz
// package supports, and busybox's unxz rejects; xz-utils is on every
// Debian system (scripts/install-deps.sh makes sure).
func xzDecode(in []byte, maxOut int) ([]byte, error) {
	cmd := exec.Command("xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("run xz: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run xz (install xz-utils): %w", err)
	}
	out, rerr := io.ReadAll(io.LimitReader(stdout, int64(maxOut)+1))
	werr := cmd.Wait()
	switch {
	case rerr != nil:
		return nil, fmt.Errorf("read xz output: %w", rerr)
	case len(out) > maxOut:
		return nil, fmt.Errorf("xz output exceeds %d bytes", maxOut)
	case werr != nil:
		return nil, fmt.Errorf("xz: %w: %s", werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}
