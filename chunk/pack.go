package chunk

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// BlobType separates disk data from metadata (disk-map pages, block
// digests) so that metadata packs stay small and cheap to fetch.
type BlobType uint8

// Blob types.
const (
	DataBlob BlobType = 1
	MetaBlob BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case MetaBlob:
		return "meta"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// PackedBlob says where a blob sits inside its pack.
type PackedBlob struct {
	Type      BlobType
	ID        ID
	Offset    uint32 // of the stored (encrypted) form in the pack
	Length    uint32 // stored length
	RawLength uint32 // plaintext length
}

// A pack is the stored blobs back to back, then the sealed header listing
// them, then the header's length as a little-endian uint32. The header is at
// the end so a pack can be streamed out while blobs are still arriving.
const (
	headerEntrySize = 1 + 32 + 4 + 4 + 4
	packTrailerSize = 4
	// headerVersion is the first plaintext byte of a pack header.
	headerVersion byte = 1
)

// ErrCorruptPack means a pack's structure cannot be parsed.
var ErrCorruptPack = errors.New("corrupt pack")

// Packer accumulates stored blobs into one pack. Not safe for concurrent
// use.
type Packer struct {
	buf   []byte
	blobs []PackedBlob
}

// NewPacker starts a pack with room for sizeHint bytes.
func NewPacker(sizeHint int) *Packer {
	return &Packer{buf: make([]byte, 0, sizeHint+sizeHint/16)}
}

// Add appends one stored blob.
func (p *Packer) Add(t BlobType, id ID, stored []byte, rawLen int) {
	p.blobs = append(p.blobs, PackedBlob{
		Type: t, ID: id, Offset: uint32(len(p.buf)),
		Length: uint32(len(stored)), RawLength: uint32(rawLen),
	})
	p.buf = append(p.buf, stored...)
}

// Size is the number of bytes added so far.
func (p *Packer) Size() int { return len(p.buf) }

// Count is the number of blobs added so far.
func (p *Packer) Count() int { return len(p.blobs) }

// Finish seals the header and returns the pack's bytes, its id (SHA-256 of
// the bytes) and its blobs. The Packer must not be used afterwards.
func (p *Packer) Finish(c *Codec) ([]byte, ID, []PackedBlob) {
	hdr := make([]byte, 1, 1+len(p.blobs)*headerEntrySize)
	hdr[0] = headerVersion
	for _, b := range p.blobs {
		hdr = append(hdr, byte(b.Type))
		hdr = append(hdr, b.ID[:]...)
		hdr = binary.LittleEndian.AppendUint32(hdr, b.Offset)
		hdr = binary.LittleEndian.AppendUint32(hdr, b.Length)
		hdr = binary.LittleEndian.AppendUint32(hdr, b.RawLength)
	}
	sealed := c.key.Seal(nil, hdr)
	p.buf = append(p.buf, sealed...)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(sealed)))
	return p.buf, sha256.Sum256(p.buf), p.blobs
}

// PackID is the id of a pack's bytes.
func PackID(pack []byte) ID { return sha256.Sum256(pack) }

// ParsePackHeader reads the header of a whole pack and checks that every
// listed blob lies inside the pack.
func ParsePackHeader(c *Codec, pack []byte) ([]PackedBlob, error) {
	if len(pack) < packTrailerSize+Overhead {
		return nil, fmt.Errorf("pack of %d bytes is too short: %w", len(pack), ErrCorruptPack)
	}
	hlen := int(binary.LittleEndian.Uint32(pack[len(pack)-packTrailerSize:]))
	if hlen+packTrailerSize > len(pack) {
		return nil, fmt.Errorf("pack header length %d does not fit a %d-byte pack: %w", hlen, len(pack), ErrCorruptPack)
	}
	return ParsePackTail(c, pack[len(pack)-packTrailerSize-hlen:], int64(len(pack)))
}

// PackTailLen returns, from a pack's last PackTrailerSize bytes, how many
// bytes at its end ParsePackTail needs: a pack's blob list can be read
// with two small range reads instead of the whole pack.
func PackTailLen(trailer []byte) (int, error) {
	if len(trailer) != packTrailerSize {
		return 0, fmt.Errorf("pack trailer of %d bytes: %w", len(trailer), ErrCorruptPack)
	}
	return int(binary.LittleEndian.Uint32(trailer)) + packTrailerSize, nil
}

// PackTrailerSize is the size of the trailer that ends every pack.
const PackTrailerSize = packTrailerSize

// ParsePackTail reads a pack's header from the pack's last bytes (header
// and trailer, as PackTailLen measured) and the pack's size.
func ParsePackTail(c *Codec, tail []byte, packSize int64) ([]PackedBlob, error) {
	if len(tail) < packTrailerSize+Overhead || int64(len(tail)) > packSize {
		return nil, fmt.Errorf("pack tail of %d bytes (pack of %d): %w", len(tail), packSize, ErrCorruptPack)
	}
	hlen := int(binary.LittleEndian.Uint32(tail[len(tail)-packTrailerSize:]))
	if hlen < Overhead || hlen+packTrailerSize != len(tail) {
		return nil, fmt.Errorf("pack header length %d does not fit a %d-byte tail: %w", hlen, len(tail), ErrCorruptPack)
	}
	hstart := packSize - int64(len(tail))
	hdr, err := c.key.Open(nil, tail[:hlen])
	if err != nil {
		return nil, fmt.Errorf("open pack header: %w", err)
	}
	if len(hdr) < 1 || hdr[0] != headerVersion || (len(hdr)-1)%headerEntrySize != 0 {
		return nil, fmt.Errorf("pack header has an unknown version or size: %w", ErrCorruptPack)
	}
	hdr = hdr[1:]
	blobs := make([]PackedBlob, 0, len(hdr)/headerEntrySize)
	for len(hdr) > 0 {
		var b PackedBlob
		b.Type = BlobType(hdr[0])
		copy(b.ID[:], hdr[1:33])
		b.Offset = binary.LittleEndian.Uint32(hdr[33:])
		b.Length = binary.LittleEndian.Uint32(hdr[37:])
		b.RawLength = binary.LittleEndian.Uint32(hdr[41:])
		if int64(b.Offset)+int64(b.Length) > hstart {
			return nil, fmt.Errorf("blob %s overlaps the pack header: %w", b.ID.Short(), ErrCorruptPack)
		}
		blobs = append(blobs, b)
		hdr = hdr[headerEntrySize:]
	}
	return blobs, nil
}

// NewPackerBuf starts a pack in a reused buffer (its length is ignored).
func NewPackerBuf(buf []byte) *Packer {
	return &Packer{buf: buf[:0]}
}
