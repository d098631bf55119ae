package nbd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"time"
	"unicode/utf8"
)

// exportInfo is what negotiation learned about the export.
type exportInfo struct {
	size       int64
	flags      uint16
	structured bool
	contexts   map[string]uint32
	// Block size constraints (NBD_INFO_BLOCK_SIZE); zero if not sent.
	minBlock, maxBlock uint32
}

// negotiator runs the fixed newstyle handshake on one connection.
type negotiator struct {
	w        io.Writer
	r        *bufio.Reader
	noZeroes bool
}

// negotiate runs the handshake up to the transmission phase: structured
// replies, the metadata contexts (they must be set before NBD_OPT_GO, or
// the export has none), then NBD_OPT_GO.
func negotiate(w io.Writer, r *bufio.Reader, export string, contexts []string) (exportInfo, error) {
	info := exportInfo{contexts: map[string]uint32{}}
	if len(export) > maxString {
		return info, fmt.Errorf("export name is %d bytes, more than the protocol's %d", len(export), maxString)
	}
	for _, name := range contexts {
		if len(name) > maxString || name == "" {
			return info, fmt.Errorf("invalid metadata context name %q", name)
		}
	}
	n := &negotiator{w: w, r: r}
	if err := n.greet(); err != nil {
		return info, err
	}
	var err error
	if info.structured, err = n.structuredReplies(); err != nil {
		return info, err
	}
	if len(contexts) > 0 {
		if !info.structured {
			return info, errors.New("server does not support structured replies, which metadata contexts need")
		}
		if info.contexts, err = n.setMetaContexts(export, contexts); err != nil {
			return info, err
		}
	}
	err = n.goExport(export, &info)
	var oe *OptionError
	if errors.As(err, &oe) && oe.Reply == repErrUnsup && len(contexts) == 0 {
		// A server from before NBD_OPT_GO: the old option still works
		// but cannot report errors.
		err = n.exportName(export, &info)
	}
	return info, err
}

// greet reads the server's greeting and sends the client flags.
func (n *negotiator) greet() error {
	var g [18]byte
	if _, err := io.ReadFull(n.r, g[:16]); err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if be.Uint64(g[0:]) != magicNBD {
		return protocolErrorf("not an NBD server (greeting starts %x)", g[:8])
	}
	switch be.Uint64(g[8:]) {
	case magicOpt:
	case magicOldstyle:
		return errors.New("server uses oldstyle negotiation, which is not supported")
	default:
		return protocolErrorf("unknown negotiation magic %#x", be.Uint64(g[8:]))
	}
	if _, err := io.ReadFull(n.r, g[16:18]); err != nil {
		return fmt.Errorf("read handshake flags: %w", err)
	}
	flags := be.Uint16(g[16:])
	if flags&hsFixedNewstyle == 0 {
		return errors.New("server does not support fixed newstyle negotiation")
	}
	cflags := uint32(hsFixedNewstyle)
	if flags&hsNoZeroes != 0 {
		cflags |= hsNoZeroes
		n.noZeroes = true
	}
	if _, err := n.w.Write(be.AppendUint32(nil, cflags)); err != nil {
		return fmt.Errorf("send client flags: %w", err)
	}
	return nil
}

// structuredReplies asks for structured replies and says if the server
// agreed.
func (n *negotiator) structuredReplies() (bool, error) {
	if err := n.send(optStructuredReply, nil); err != nil {
		return false, err
	}
	typ, _, err := n.reply(optStructuredReply)
	var oe *OptionError
	switch {
	case errors.As(err, &oe) && oe.Reply != repErrTLSReqd && oe.Reply != repErrShutdown:
		return false, nil
	case err != nil:
		return false, err
	case typ != repAck:
		return false, protocolErrorf("reply type %d to NBD_OPT_STRUCTURED_REPLY", typ)
	}
	return true, nil
}

// setMetaContexts selects the metadata contexts and returns the ids of
// those the server granted, by name.
func (n *negotiator) setMetaContexts(export string, names []string) (map[string]uint32, error) {
	data := appendString(nil, export)
	data = be.AppendUint32(data, uint32(len(names)))
	for _, name := range names {
		data = appendString(data, name)
	}
	if err := n.send(optSetMetaContext, data); err != nil {
		return nil, err
	}
	granted := map[string]uint32{}
	for {
		typ, p, err := n.reply(optSetMetaContext)
		if err != nil {
			return nil, err
		}
		switch typ {
		case repAck:
			return granted, nil
		case repMetaContext:
			if len(p) < 5 || len(p) > 4+maxString || !utf8.Valid(p[4:]) {
				return nil, protocolErrorf("malformed NBD_REP_META_CONTEXT of %d bytes", len(p))
			}
			granted[string(p[4:])] = be.Uint32(p)
		default:
			return nil, protocolErrorf("reply type %d to NBD_OPT_SET_META_CONTEXT", typ)
		}
	}
}

// goExport opens the export with NBD_OPT_GO, asking for the block size
// constraints as well as the size and flags.
func (n *negotiator) goExport(export string, info *exportInfo) error {
	data := appendString(nil, export)
	data = be.AppendUint16(data, 1)
	data = be.AppendUint16(data, infoBlockSize)
	if err := n.send(optGo, data); err != nil {
		return err
	}
	gotExport := false
	for {
		typ, p, err := n.reply(optGo)
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			if !gotExport {
				return protocolErrorf("NBD_OPT_GO succeeded without NBD_INFO_EXPORT")
			}
			return nil
		case repInfo:
			if len(p) < 2 {
				return protocolErrorf("empty NBD_REP_INFO")
			}
			switch be.Uint16(p) {
			case infoExport:
				if len(p) != 12 {
					return protocolErrorf("NBD_INFO_EXPORT of %d bytes", len(p))
				}
				if err := info.setExport(be.Uint64(p[2:]), be.Uint16(p[10:])); err != nil {
					return err
				}
				gotExport = true
			case infoBlockSize:
				if len(p) != 14 {
					return protocolErrorf("NBD_INFO_BLOCK_SIZE of %d bytes", len(p))
				}
				if err := info.setBlockSize(be.Uint32(p[2:]), be.Uint32(p[10:])); err != nil {
					return err
				}
			}
		default:
			return protocolErrorf("reply type %d to NBD_OPT_GO", typ)
		}
	}
}

// exportName opens the export the old way. A server without the export
// just hangs up.
func (n *negotiator) exportName(export string, info *exportInfo) error {
	if err := n.send(optExportName, []byte(export)); err != nil {
		return err
	}
	var b [10]byte
	if _, err := io.ReadFull(n.r, b[:]); err != nil {
		return fmt.Errorf("server hung up on NBD_OPT_EXPORT_NAME (%w?): %w", ErrUnknownExport, err)
	}
	if !n.noZeroes {
		if _, err := n.r.Discard(124); err != nil {
			return fmt.Errorf("read NBD_OPT_EXPORT_NAME padding: %w", err)
		}
	}
	return info.setExport(be.Uint64(b[:]), be.Uint16(b[8:]))
}

func (info *exportInfo) setExport(size uint64, flags uint16) error {
	if size > math.MaxInt64 {
		return protocolErrorf("export size %d too large", size)
	}
	info.size, info.flags = int64(size), flags
	return nil
}

// setBlockSize checks the server's block size constraints: the minimum
// is a power of two up to 64 KiB, and the maximum payload is at least the
// minimum.
func (info *exportInfo) setBlockSize(minimum, maximum uint32) error {
	if minimum == 0 || minimum&(minimum-1) != 0 || minimum > 64<<10 || maximum < minimum {
		return protocolErrorf("invalid block sizes: minimum %d, maximum %d", minimum, maximum)
	}
	info.minBlock, info.maxBlock = minimum, maximum
	return nil
}

// send writes one option request.
func (n *negotiator) send(opt uint32, data []byte) error {
	b := make([]byte, 0, 16+len(data))
	b = be.AppendUint64(b, magicOpt)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	if _, err := n.w.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", optionName(opt), err)
	}
	return nil
}

// reply reads one option reply to opt. Error replies come back as
// *OptionError.
func (n *negotiator) reply(opt uint32) (typ uint32, payload []byte, err error) {
	var h [20]byte
	if _, err := io.ReadFull(n.r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("read reply to %s: %w", optionName(opt), err)
	}
	if m := be.Uint64(h[:]); m != magicOptReply {
		return 0, nil, protocolErrorf("bad option reply magic %#x", m)
	}
	if o := be.Uint32(h[8:]); o != opt {
		return 0, nil, protocolErrorf("reply to option %d while waiting for %s", o, optionName(opt))
	}
	typ = be.Uint32(h[12:])
	length := be.Uint32(h[16:])
	if length > maxOptionReply {
		return 0, nil, protocolErrorf("option reply of %d bytes", length)
	}
	payload = make([]byte, length)
	if _, err := io.ReadFull(n.r, payload); err != nil {
		return 0, nil, fmt.Errorf("read reply to %s: %w", optionName(opt), err)
	}
	if typ&repErr != 0 {
		return typ, nil, &OptionError{Option: opt, Reply: typ, Message: cleanMessage(payload)}
	}
	return typ, payload, nil
}

// abortNegotiation tells the server we give up (NBD_OPT_ABORT), best
// effort: the server may be gone already, and the reply does not matter.
func abortNegotiation(conn net.Conn) {
	var b [16]byte
	be.PutUint64(b[0:], magicOpt)
	be.PutUint32(b[8:], optAbort)
	_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = conn.Write(b[:])
}

// cleanMessage makes a server's message safe to print: valid UTF-8,
// bounded, without control characters.
func cleanMessage(p []byte) string {
	if len(p) > maxString {
		p = p[:maxString]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(p), "?"))
}
