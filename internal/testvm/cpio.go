package testvm

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" cpio format, the one the kernel unpacks
// into its initial root file system. archive/ has no cpio writer, and the
// format is small: a 110-byte ASCII header of hex fields, the NUL-ended
// name and the data, each padded to four bytes.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

// File type bits of the mode field.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// entry writes one member. Modification times are zero so the same
// inputs give the same archive (and cache key).
func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	c.write(make([]byte, alignUp4(n)-n))
}

func (c *cpioWriter) dir(name string) { c.entry(name, cpioDir|0o755, 0, 0, nil) }

func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, cpioFile|perm, 0, 0, data)
}

func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, cpioSymlink|0o777, 0, 0, []byte(target))
}

func (c *cpioWriter) charDev(name string, perm, major, minor uint32) {
	c.entry(name, cpioCharDev|perm, major, minor, nil)
}

// close writes the trailer entry and returns the first write error.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	if c.err != nil {
		return fmt.Errorf("write cpio archive: %w", c.err)
	}
	return nil
}

// alignUp4 rounds n up to a multiple of 4, the newc padding.
func alignUp4(n int) int { return (n + 3) &^ 3 }
