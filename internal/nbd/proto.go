package nbd

import "encoding/binary"

// Wire constants from the NBD protocol specification. Only what this
// client sends or must recognise is listed.
const (
	magicNBD        = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt        = 0x49484156454f5054 // "IHAVEOPT": newstyle negotiation
	magicOldstyle   = 0x00420281861253   // oldstyle negotiation, unsupported
	magicOptReply   = 0x0003e889045565a9
	magicRequest    = 0x25609513
	magicSimple     = 0x67446698
	magicStructured = 0x668e33ef

	// Handshake flags (server) and client flags.
	hsFixedNewstyle = 1 << 0
	hsNoZeroes      = 1 << 1

	optExportName      = 1
	optAbort           = 2
	optGo              = 7
	optStructuredReply = 8
	optSetMetaContext  = 10

	repAck         = 1
	repInfo        = 3
	repMetaContext = 4
	repErr         = 1 << 31

	repErrUnsup         = repErr | 1
	repErrPolicy        = repErr | 2
	repErrInvalid       = repErr | 3
	repErrPlatform      = repErr | 4
	repErrTLSReqd       = repErr | 5
	repErrUnknown       = repErr | 6
	repErrShutdown      = repErr | 7
	repErrBlockSizeReqd = repErr | 8
	repErrTooBig        = repErr | 9
	repErrExtHeaderReqd = repErr | 10

	infoExport    = 0
	infoBlockSize = 3

	// Transmission flags.
	tfHasFlags     = 1 << 0
	tfReadOnly     = 1 << 1
	tfCanMultiConn = 1 << 8

	cmdRead        = 0
	cmdDisc        = 2
	cmdBlockStatus = 7

	replyFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkErrBit      = 1 << 15
	chunkError       = chunkErrBit | 1
	chunkErrorOffset = chunkErrBit | 2

	requestSize     = 28 // magic, flags, type, cookie, offset, length
	simpleReplySize = 16 // magic, error, cookie
	chunkHeaderSize = 20 // magic, flags, type, cookie, length
)

// Limits this client imposes, to keep a confused or hostile server from
// making it allocate without bound or loop forever.
const (
	// maxReadRequest is the largest NBD_CMD_READ the client sends: QEMU
	// refuses reads above 32 MiB, and the spec's default maximum payload
	// is the same when a server does not say.
	maxReadRequest = 32 << 20
	// maxStatusRequest keeps NBD_CMD_BLOCK_STATUS lengths below 4 GiB
	// (the field is 32 bits) and aligned to any minimum block size up to
	// the spec's limit of 64 KiB.
	maxStatusRequest = 1<<32 - 64<<10
	// maxOptionReply bounds a negotiation reply's payload; real ones are
	// a few bytes to a few KiB (strings are at most 4 KiB).
	maxOptionReply = 1 << 20
	// maxMetaChunk bounds a non-data reply chunk (block status descriptors,
	// error messages). QEMU sends at most 1 MiB of descriptors per chunk.
	maxMetaChunk = 64 << 20
	// maxString is the protocol's limit for names and messages.
	maxString = 4096
)

// Flags of the base:allocation metadata context.
const (
	// StateHole: the range is not allocated on the server's storage.
	StateHole = 1 << 0
	// StateZero: the range reads as zeros.
	StateZero = 1 << 1
)

// StateDirty is the flag of a qemu:dirty-bitmap:NAME context: the range
// was written while the bitmap was recording.
const StateDirty = 1 << 0

// ContextBaseAllocation is the standard metadata context that reports
// holes and zeros.
const ContextBaseAllocation = "base:allocation"

// DirtyBitmapContext returns the metadata context under which QEMU
// exports the dirty bitmap named bitmap (block-export-add "bitmaps", or
// qemu-nbd -B).
func DirtyBitmapContext(bitmap string) string { return "qemu:dirty-bitmap:" + bitmap }

var be = binary.BigEndian

// putRequest encodes a transmission-phase request header into b.
func putRequest(b *[requestSize]byte, cmd uint16, cookie, off uint64, length uint32) {
	be.PutUint32(b[0:], magicRequest)
	be.PutUint16(b[4:], 0) // command flags
	be.PutUint16(b[6:], cmd)
	be.PutUint64(b[8:], cookie)
	be.PutUint64(b[16:], off)
	be.PutUint32(b[24:], length)
}

// appendString appends a 32-bit length-prefixed string, the form names
// take inside option payloads.
func appendString(b []byte, s string) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
