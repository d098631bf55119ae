// Package nbd is a small client for the Network Block Device protocol,
// written to pull a VM's disk contents, and the blocks that changed since
// the previous snapshot, out of QEMU's built-in NBD server.
//
// drctl needs metadata contexts (NBD_CMD_BLOCK_STATUS with base:allocation
// and qemu:dirty-bitmap:NAME) and structured read replies, which no pure Go
// NBD client offers, so this package implements just that subset:
//
//   - the fixed newstyle handshake with NO_ZEROES, structured replies,
//     NBD_OPT_SET_META_CONTEXT, and NBD_OPT_GO (falling back to
//     NBD_OPT_EXPORT_NAME for servers without it);
//   - NBD_CMD_READ and NBD_CMD_BLOCK_STATUS, pipelined: any number of
//     goroutines may have requests outstanding on one connection, and
//     replies are matched to requests by cookie, so one connection can keep
//     the server busy;
//   - NBD_CMD_DISC on Close.
//
// Writes, TLS and extended headers are not implemented: drctl only reads
// from exports on a local unix socket.
//
// A dead server fails every outstanding and later request at once. A server
// that stays connected but stops answering is only noticed through the
// context given to each call, so callers should set deadlines.
package nbd
