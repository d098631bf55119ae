package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// measurement is one measured child process.
type measurement struct {
	Wall    time.Duration
	CPU     time.Duration // user + system
	MaxRSS  int64         // bytes, from wait4's rusage
	Summary summary       // the last "message_type":"summary" JSON line on stdout
}

// command is a child process to measure.
type command struct {
	Dir  string
	Env  []string
	Args []string
	Log  string // file that receives the child's stdout and stderr
}

// measure runs c, timing it and reading its resource usage from the
// kernel (no /usr/bin/time needed).
func measure(ctx context.Context, c command) (measurement, error) {
	logf, err := os.Create(c.Log)
	if err != nil {
		return measurement{}, fmt.Errorf("create log: %w", err)
	}
	defer logf.Close()
	var stderr tail
	sum := &summaryScanner{}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.Stdout = io.MultiWriter(logf, sum)
	cmd.Stderr = io.MultiWriter(logf, &stderr)
	start := time.Now()
	err = cmd.Run()
	r := measurement{Wall: time.Since(start)}
	if ps := cmd.ProcessState; ps != nil {
		r.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = ru.Maxrss * 1024 // KiB on Linux
		}
	}
	sum.flush()
	r.Summary = sum.last
	if err != nil {
		return r, fmt.Errorf("run %s: %w: %s", strings.Join(c.Args, " "), err, stderr.String())
	}
	return r, nil
}

// summary is a decoded JSON summary line; fields are looked up by name so
// that missing or renamed fields show as n/a instead of failing the run.
type summary map[string]any

// int returns field name as an integer, or -1 when absent or not a number.
func (s summary) int(name string) int64 {
	switch v := s[name].(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if f, err := v.Float64(); err == nil {
			return int64(f)
		}
	}
	return -1
}

// summaryScanner is an io.Writer that keeps the last JSON line whose
// message_type is "summary".
type summaryScanner struct {
	partial []byte
	last    summary
}

func (s *summaryScanner) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(s.partial[:i])
		s.partial = s.partial[i+1:]
	}
	return len(p), nil
}

func (s *summaryScanner) flush() {
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
}

func (s *summaryScanner) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, []byte(`"summary"`)) {
		return
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m summary
	if dec.Decode(&m) == nil && m["message_type"] == "summary" {
		s.last = m
	}
}

// tail keeps the last 2 KiB written to it, for error messages.
type tail struct{ b []byte }

const tailSize = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailSize {
		t.b = t.b[len(t.b)-tailSize:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.b)) }

// dirUsage returns the total size (apparent bytes) and count of the
// regular files under dir: what a repository on a target would bill.
func dirUsage(dir string) (bytes, files int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		bytes += info.Size()
		files++
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return bytes, files, nil
}

// dropCaches syncs and drops the page cache so the next step reads from
// disk. It needs root; it reports whether it worked.
func dropCaches() bool {
	if os.Geteuid() != 0 {
		return false
	}
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil
}

// firstDifference compares two files and returns -1 if they are equal,
// else the offset of the first differing byte (or the shorter length).
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, fmt.Errorf("open for compare: %w", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, fmt.Errorf("open for compare: %w", err)
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, regionSize), bufio.NewReaderSize(fb, regionSize)
	ba, bb := make([]byte, regionSize), make([]byte, regionSize)
	var off int64
	for {
		na, ea := io.ReadFull(ra, ba)
		nb, eb := io.ReadFull(rb, bb)
		if i := mismatch(ba[:na], bb[:nb]); i >= 0 {
			return off + int64(i), nil
		}
		off += int64(na)
		if ea != nil || eb != nil {
			return -1, readErr(ea, eb)
		}
	}
}

func readErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read for compare: %w", err)
		}
	}
	return nil
}

// mismatch returns the first index where a and b differ, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
