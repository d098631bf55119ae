package nbd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fakeServer is an NBD server for unit tests: correct by default, with
// knobs and hooks to misbehave the ways real servers (or broken ones) do.
type fakeServer struct {
	export   string
	data     []byte            // the export's contents
	size     uint64            // export size if not len(data) (for huge sparse exports)
	contexts map[string]uint32 // metadata contexts on offer, with the ids to hand out

	noStructured bool      // refuse NBD_OPT_STRUCTURED_REPLY
	noGo         bool      // refuse NBD_OPT_GO (an old server)
	tlsRequired  bool      // refuse everything with NBD_REP_ERR_TLS_REQD
	blockSize    [2]uint32 // minimum and maximum, sent as NBD_INFO_BLOCK_SIZE if set
	maxExtents   int       // block status: at most this many extents per reply
	overshoot    bool      // block status: describe up to 4 KiB past the request
	// status overrides the block status of a context.
	status func(ctx string, off uint64, length uint32) []descriptor
	// handle, if set, serves a request instead of the default; it returns
	// false to let the default serve it.
	handle func(sc *serverConn, req fakeRequest) bool

	mu       sync.Mutex
	requests []fakeRequest // every transmission request received
	discs    int           // NBD_CMD_DISC received
}

type fakeRequest struct {
	cmd    uint16
	cookie uint64
	off    uint64
	length uint32
}

// serverConn is the server's side of one connection.
type serverConn struct {
	net.Conn
	wmu        sync.Mutex
	structured bool
	contexts   []string // selected, in order
}

// listen serves connections on a unix socket until the test ends and
// returns the socket's path.
func (s *fakeServer) listen(t testing.TB) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(&serverConn{Conn: c})
			}()
		}
	}()
	return sock
}

// shortTempDir is a temporary directory with a short path: unix socket
// paths are limited to about 100 bytes, and t.TempDir's can be longer.
func shortTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (s *fakeServer) exportSize() uint64 {
	if s.size != 0 {
		return s.size
	}
	return uint64(len(s.data))
}

func (s *fakeServer) serve(sc *serverConn) {
	if s.negotiate(sc) {
		s.transmit(sc)
	}
}

// negotiate runs the server side of the handshake; true means the
// transmission phase begins.
func (s *fakeServer) negotiate(sc *serverConn) bool {
	var g []byte
	g = binary.BigEndian.AppendUint64(g, magicNBD)
	g = binary.BigEndian.AppendUint64(g, magicOpt)
	g = binary.BigEndian.AppendUint16(g, hsFixedNewstyle|hsNoZeroes)
	if _, err := sc.Write(g); err != nil {
		return false
	}
	var cflags uint32
	if binary.Read(sc, be, &cflags) != nil {
		return false
	}
	noZeroes := cflags&hsNoZeroes != 0
	for {
		var h struct {
			Magic  uint64
			Opt    uint32
			Length uint32
		}
		if binary.Read(sc, be, &h) != nil || h.Magic != magicOpt || h.Length > 1<<16 {
			return false
		}
		data := make([]byte, h.Length)
		if _, err := io.ReadFull(sc, data); err != nil {
			return false
		}
		if s.tlsRequired && h.Opt != optAbort {
			sc.optReply(h.Opt, repErrTLSReqd, []byte("TLS is required"))
			continue
		}
		switch h.Opt {
		case optStructuredReply:
			if s.noStructured {
				sc.optReply(h.Opt, repErrUnsup, nil)
				continue
			}
			sc.structured = true
			sc.optReply(h.Opt, repAck, nil)
		case optSetMetaContext:
			name, rest := readString(data)
			if name != s.export {
				sc.optReply(h.Opt, repErrUnknown, []byte("export '"+name+"' not present"))
				continue
			}
			sc.contexts = nil
			if len(rest) >= 4 {
				n := be.Uint32(rest)
				rest = rest[4:]
				for range n {
					var q string
					q, rest = readString(rest)
					if id, ok := s.contexts[q]; ok {
						sc.contexts = append(sc.contexts, q)
						sc.optReply(h.Opt, repMetaContext, appendStringID(id, q))
					}
				}
			}
			sc.optReply(h.Opt, repAck, nil)
		case optGo:
			name, _ := readString(data)
			switch {
			case s.noGo:
				sc.optReply(h.Opt, repErrUnsup, nil)
			case name != s.export:
				sc.optReply(h.Opt, repErrUnknown, []byte("export '"+name+"' not present"))
			default:
				info := be.AppendUint16(nil, infoExport)
				info = be.AppendUint64(info, s.exportSize())
				info = be.AppendUint16(info, tfHasFlags|tfReadOnly|tfCanMultiConn)
				sc.optReply(h.Opt, repInfo, info)
				if s.blockSize[0] != 0 {
					bs := be.AppendUint16(nil, infoBlockSize)
					bs = be.AppendUint32(bs, s.blockSize[0])
					bs = be.AppendUint32(bs, 4096)
					bs = be.AppendUint32(bs, s.blockSize[1])
					sc.optReply(h.Opt, repInfo, bs)
				}
				sc.optReply(h.Opt, repAck, nil)
				return true
			}
		case optExportName:
			if string(data) != s.export {
				return false // the old option cannot report errors
			}
			b := be.AppendUint64(nil, s.exportSize())
			b = be.AppendUint16(b, tfHasFlags|tfReadOnly)
			if !noZeroes {
				b = append(b, make([]byte, 124)...)
			}
			_, err := sc.Write(b)
			return err == nil
		case optAbort:
			sc.optReply(h.Opt, repAck, nil)
			return false
		default:
			sc.optReply(h.Opt, repErrUnsup, nil)
		}
	}
}

func readString(b []byte) (string, []byte) {
	if len(b) < 4 || uint64(len(b)-4) < uint64(be.Uint32(b)) {
		return "", nil
	}
	n := be.Uint32(b)
	return string(b[4 : 4+n]), b[4+n:]
}

func appendStringID(id uint32, s string) []byte {
	return append(be.AppendUint32(nil, id), s...)
}

func (sc *serverConn) optReply(opt, typ uint32, data []byte) {
	b := be.AppendUint64(nil, magicOptReply)
	b = be.AppendUint32(b, opt)
	b = be.AppendUint32(b, typ)
	b = be.AppendUint32(b, uint32(len(data)))
	sc.Write(append(b, data...))
}

// transmit serves requests until NBD_CMD_DISC or the connection ends.
func (s *fakeServer) transmit(sc *serverConn) {
	for {
		var h [requestSize]byte
		if _, err := io.ReadFull(sc, h[:]); err != nil || be.Uint32(h[:]) != magicRequest {
			return
		}
		req := fakeRequest{cmd: be.Uint16(h[6:]), cookie: be.Uint64(h[8:]), off: be.Uint64(h[16:]), length: be.Uint32(h[24:])}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		if req.cmd == cmdDisc {
			s.discs++
		}
		s.mu.Unlock()
		if req.cmd == cmdDisc {
			return
		}
		if s.handle != nil && s.handle(sc, req) {
			continue
		}
		s.serveDefault(sc, req)
	}
}

func (s *fakeServer) serveDefault(sc *serverConn, req fakeRequest) {
	if req.off+uint64(req.length) > s.exportSize() {
		sc.errorReply(req.cookie, 22, "out of range")
		return
	}
	switch req.cmd {
	case cmdRead:
		s.read(sc, req)
	case cmdBlockStatus:
		s.blockStatus(sc, req)
	default:
		sc.errorReply(req.cookie, 22, "unsupported command")
	}
}

// read answers with data and hole chunks, in reverse order: the spec
// allows any order.
func (s *fakeServer) read(sc *serverConn, req fakeRequest) {
	p := s.data[req.off : req.off+uint64(req.length)]
	if !sc.structured {
		sc.simple(req.cookie, 0, p)
		return
	}
	runs := zeroRuns(p, req.off)
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		flags := uint16(0)
		if i == 0 {
			flags = replyFlagDone
		}
		if r.flags&StateZero != 0 {
			sc.holeChunk(req.cookie, flags, r.off, uint32(r.len))
		} else {
			sc.dataChunk(req.cookie, flags, r.off, s.data[r.off:r.off+r.len])
		}
	}
}

// fakeExtent is a run of an export with the same flags.
type fakeExtent struct {
	off, len uint64
	flags    uint32
}

// zeroRuns splits p, found at offset off, into runs of the export's
// 512-byte blocks that are all zeros (StateHole|StateZero) or not (0).
func zeroRuns(p []byte, off uint64) []fakeExtent {
	var runs []fakeExtent
	zero := make([]byte, 512)
	for i := 0; i < len(p); {
		b := p[i:min(i+512-int((off+uint64(i))%512), len(p))]
		flags := uint32(0)
		if bytes.Equal(b, zero[:len(b)]) {
			flags = StateHole | StateZero
		}
		if n := len(runs); n > 0 && runs[n-1].flags == flags {
			runs[n-1].len += uint64(len(b))
		} else {
			runs = append(runs, fakeExtent{off + uint64(i), uint64(len(b)), flags})
		}
		i += len(b)
	}
	return runs
}

// blockStatus answers with one chunk per selected context.
func (s *fakeServer) blockStatus(sc *serverConn, req fakeRequest) {
	if len(sc.contexts) == 0 {
		sc.errorReply(req.cookie, 22, "no contexts")
		return
	}
	length := uint64(req.length)
	if s.overshoot {
		// Describe a little past the request, truthfully.
		length = min(length+4096, s.exportSize()-req.off)
	}
	for i, name := range sc.contexts {
		var descs []descriptor
		if s.status != nil {
			descs = s.status(name, req.off, uint32(length))
		} else {
			for _, r := range zeroRuns(s.data[req.off:req.off+length], req.off) {
				descs = append(descs, descriptor{uint32(r.len), r.flags})
			}
		}
		if s.maxExtents > 0 && len(descs) > s.maxExtents {
			descs = descs[:s.maxExtents]
		}
		payload := be.AppendUint32(nil, s.contexts[name])
		for _, d := range descs {
			payload = be.AppendUint32(payload, d.length)
			payload = be.AppendUint32(payload, d.flags)
		}
		flags := uint16(0)
		if i == len(sc.contexts)-1 {
			flags = replyFlagDone
		}
		sc.chunk(req.cookie, flags, chunkBlockStatus, payload)
	}
}

// received returns the requests the server has read so far.
func (s *fakeServer) received() []fakeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakeRequest(nil), s.requests...)
}
