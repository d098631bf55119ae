package testvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The seq workload and its invariant. The guest writes records 0, 1, 2,
// ... (from Options.SeqStart) to two data disks, A (disk 0) and B
// (disk 1). Record n goes to block n mod R of A, then to the same block
// of B, each with O_DIRECT, so it is on the virtual disk before the next
// write starts. R, the ring, is the smaller disk's size in 4 KiB blocks,
// or Options.Blocks if smaller; the sequence wraps around it.
//
// Every block is 8 identical sectors of a header line padded with spaces
// to 511 bytes plus a newline:
//
//	DRSEQ n=0000000042 disk=A block=0000000042 ring=0000016384 check=1a2b3c4d
//
// check is FNV-1a over n, the disk (0 for A, 1 for B), block and ring as
// 32-bit words, so a record proves its own integrity, and its place: a
// record on the wrong disk or at the wrong offset is detected.
//
// Invariant: a disk image is a prefix of the sequence, that is, exactly
// what writing records 0..last in order leaves behind: block b (b < R)
// holds the largest n <= last with n mod R == b, or zeros if there is
// none yet, and every block from R on is zero. For a pair taken at one
// instant (a crash-consistent snapshot), B's last record is A's or one
// less, because A is written first.

// SeqBlockSize is the size of a seq record, the unit of the ring.
const SeqBlockSize = 4096

const (
	seqSector    = 512
	seqHeaderFmt = "DRSEQ n=%010d disk=%c block=%010d ring=%010d check=%08x"
)

// seqCheck is the record's check word, as init.sh computes it with shell
// arithmetic (no forks in the write loop, hence no real CRC).
func seqCheck(n int64, disk byte, block, ring int64) uint32 {
	c := uint64(2166136261)
	for _, v := range []int64{n, int64(disk - 'A'), block, ring} {
		c = (c ^ uint64(v)) * 16777619 & 0xFFFFFFFF
	}
	return uint32(c)
}

// SeqRecord is the block the guest writes for record n on disk 'A' or
// 'B' at block index n mod ring.
func SeqRecord(n int64, disk byte, ring int64) []byte {
	block := n % ring
	line := fmt.Sprintf(seqHeaderFmt, n, disk, block, ring, seqCheck(n, disk, block, ring))
	line = fmt.Sprintf("%-*s\n", seqSector-1, line)
	return bytes.Repeat([]byte(line), SeqBlockSize/seqSector)
}

// CheckSeq checks the seq invariant on raw images of disks A and B and
// returns the last record of each (-1 for none: a pair taken before the
// guest wrote anything is valid).
func CheckSeq(diskA, diskB []byte) (lastA, lastB int64, err error) {
	return checkSeq(bytes.NewReader(diskA), int64(len(diskA)), bytes.NewReader(diskB), int64(len(diskB)))
}

// CheckSeqFiles is CheckSeq on raw image files (see ConvertToRaw).
func CheckSeqFiles(pathA, pathB string) (lastA, lastB int64, err error) {
	fa, sa, err := openSized(pathA)
	if err != nil {
		return 0, 0, err
	}
	defer fa.Close()
	fb, sb, err := openSized(pathB)
	if err != nil {
		return 0, 0, err
	}
	defer fb.Close()
	return checkSeq(fa, sa, fb, sb)
}

func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("check seq: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("check seq: %w", err)
	}
	return f, st.Size(), nil
}

func checkSeq(a io.ReaderAt, sizeA int64, b io.ReaderAt, sizeB int64) (int64, int64, error) {
	sa, err := scanSeq(a, sizeA, 'A')
	if err != nil {
		return 0, 0, err
	}
	sb, err := scanSeq(b, sizeB, 'B')
	if err != nil {
		return 0, 0, err
	}
	if sa.ring != 0 && sb.ring != 0 && sa.ring != sb.ring {
		return 0, 0, fmt.Errorf("check seq: disk A has a ring of %d blocks, disk B of %d", sa.ring, sb.ring)
	}
	if d := sa.last - sb.last; d != 0 && d != 1 {
		return 0, 0, fmt.Errorf("check seq: disk A ends at record %d, disk B at %d: B must end at A's record or the one before (the disks are not from one instant)",
			sa.last, sb.last)
	}
	return sa.last, sb.last, nil
}

// seqScan is what one disk holds.
type seqScan struct {
	disk byte
	ring int64   // 0 while no record was seen
	at   []int64 // record number in each block, -1 for zeros
	last int64
}

// scanSeq reads a disk image, validating each block on its own, then
// checks that together they are a prefix of the sequence.
func scanSeq(r io.ReaderAt, size int64, disk byte) (*seqScan, error) {
	s := &seqScan{disk: disk, at: make([]int64, 0, size/SeqBlockSize), last: -1}
	buf := make([]byte, 256*SeqBlockSize)
	for off := int64(0); off < size; off += int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := r.ReadAt(chunk, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(len(chunk)) == size) {
			return nil, fmt.Errorf("check seq: read disk %c: %w", disk, err)
		}
		for p := 0; p < len(chunk); p += SeqBlockSize {
			blk := chunk[p:min(p+SeqBlockSize, len(chunk))]
			if err := s.block(blk, int64(len(s.at))); err != nil {
				return nil, fmt.Errorf("check seq: disk %c, block %d (offset %d): %w", disk, len(s.at), off+int64(p), err)
			}
		}
	}
	return s, s.checkPrefix()
}

// block validates block index b and notes what it holds.
func (s *seqScan) block(blk []byte, b int64) error {
	if isZero(blk) {
		s.at = append(s.at, -1)
		return nil
	}
	if len(blk) < SeqBlockSize {
		return errors.New("a partial block at the end of the disk is not zero")
	}
	n, disk, block, ring, err := parseSeqHeader(blk[:seqSector-1])
	if err != nil {
		return err
	}
	switch {
	case disk != s.disk:
		return fmt.Errorf("holds record %d of disk %c", n, disk)
	case ring <= 0 || block != n%ring:
		return fmt.Errorf("record %d is inconsistent: block %d of a ring of %d", n, block, ring)
	case block != b:
		return fmt.Errorf("holds record %d, which belongs in block %d", n, block)
	case s.ring != 0 && ring != s.ring:
		return fmt.Errorf("record %d has a ring of %d blocks, earlier records %d", n, ring, s.ring)
	case !bytes.Equal(blk, SeqRecord(n, disk, ring)):
		return fmt.Errorf("record %d is damaged (a torn write, or corruption)", n)
	}
	s.ring = ring
	s.at = append(s.at, n)
	s.last = max(s.last, n)
	return nil
}

// parseSeqHeader reads the fields of a header line and verifies its check
// word.
func parseSeqHeader(line []byte) (n int64, disk byte, block, ring int64, err error) {
	bad := fmt.Errorf("not a seq record: %q", truncate(string(line), 80))
	f := strings.Fields(string(line))
	if len(f) != 6 || f[0] != "DRSEQ" {
		return 0, 0, 0, 0, bad
	}
	var v [5]string // n, disk, block, ring, check
	for i, key := range []string{"n=", "disk=", "block=", "ring=", "check="} {
		var ok bool
		if v[i], ok = strings.CutPrefix(f[i+1], key); !ok {
			return 0, 0, 0, 0, bad
		}
	}
	n, e1 := strconv.ParseInt(v[0], 10, 64)
	block, e2 := strconv.ParseInt(v[2], 10, 64)
	ring, e3 := strconv.ParseInt(v[3], 10, 64)
	check, e4 := strconv.ParseUint(v[4], 16, 32)
	if errors.Join(e1, e2, e3, e4) != nil || (v[1] != "A" && v[1] != "B") {
		return 0, 0, 0, 0, bad
	}
	disk = v[1][0]
	if uint32(check) != seqCheck(n, disk, block, ring) {
		return 0, 0, 0, 0, fmt.Errorf("seq record with a wrong check word: %q", truncate(string(line), 80))
	}
	return n, disk, block, ring, nil
}

// checkPrefix checks that the blocks are what writing records 0..last in
// order leaves.
func (s *seqScan) checkPrefix() error {
	if s.last < 0 {
		return nil
	}
	if s.ring > int64(len(s.at)) {
		return fmt.Errorf("check seq: disk %c: a ring of %d blocks does not fit its %d blocks", s.disk, s.ring, len(s.at))
	}
	for b := range s.ring {
		want := int64(-1)
		if s.last >= b {
			want = s.last - (s.last-b)%s.ring
		}
		if s.at[b] != want {
			return fmt.Errorf("check seq: disk %c, block %d: holds %s, want %s (the disk ends at record %d, so records are missing or stale)",
				s.disk, b, describeRecord(s.at[b]), describeRecord(want), s.last)
		}
	}
	return nil
}

func describeRecord(n int64) string {
	if n < 0 {
		return "zeros"
	}
	return "record " + strconv.FormatInt(n, 10)
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	s = strings.TrimRight(s, " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
