package nbd

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// fuzzRequests registers a read, a block status and an abandoned read,
// as cookies 1, 2 and 3.
func fuzzRequests(c *Client) []*request {
	read := newRequest(cmdRead, 4096, 8192)
	read.buf = make([]byte, 8192)
	status := newRequest(cmdBlockStatus, 0, 1<<20)
	status.ctxID = 5
	gone := newRequest(cmdRead, 0, 512)
	gone.buf = make([]byte, 512)
	gone.abandoned.Store(true)
	reqs := []*request{read, status, gone}
	for i, r := range reqs {
		r.cookie = uint64(i + 1)
		c.pending[r.cookie] = r
	}
	return reqs
}

// FuzzReplies feeds arbitrary bytes to the reply parser as if the server
// sent them: it must never panic, hang or write outside a buffer, and a
// request it completes without error must be fully answered.
func FuzzReplies(f *testing.F) {
	data := bytes.Repeat([]byte{0xab}, 4096)
	status := be.AppendUint32(nil, 5)
	status = be.AppendUint32(be.AppendUint32(status, 1<<19), 0)
	status = be.AppendUint32(be.AppendUint32(status, 1<<19), StateDirty)
	other := append(be.AppendUint32(nil, 9), status[4:]...)
	seeds := [][]byte{
		append(chunkBytes(1, 0, chunkOffsetData, dataPayload(4096, data)),
			chunkBytes(1, replyFlagDone, chunkOffsetHole, holePayload(8192, 4096))...),
		append(chunkBytes(2, 0, chunkBlockStatus, other),
			chunkBytes(2, replyFlagDone, chunkBlockStatus, status)...),
		chunkBytes(3, replyFlagDone, chunkOffsetData, dataPayload(0, data[:512])),
		chunkBytes(1, replyFlagDone, chunkErrorOffset, append(errorPayload(5, "bad"), be.AppendUint64(nil, 5000)...)),
		chunkBytes(2, replyFlagDone, chunkNone, nil),
		be.AppendUint64(be.AppendUint32(be.AppendUint32(nil, magicSimple), 22), 2),
	}
	for _, s := range seeds {
		f.Add(true, s)
	}
	simple := be.AppendUint64(be.AppendUint32(be.AppendUint32(nil, magicSimple), 0), 3)
	f.Add(false, append(simple, data[:512]...))

	f.Fuzz(func(t *testing.T, structured bool, stream []byte) {
		c := &Client{structured: structured, pending: map[uint64]*request{}, minBlock: 1}
		reqs := fuzzRequests(c)
		err := c.readReplies(bufio.NewReaderSize(bytes.NewReader(stream), 16))
		if err == nil {
			t.Fatal("the reply stream ended without an error")
		}
		if len(stream) == 0 && err != io.EOF {
			t.Fatalf("empty stream: %v", err)
		}
		for _, r := range reqs {
			select {
			case <-r.done:
			default:
				continue
			}
			if r.err != nil {
				continue
			}
			if r.cmd == cmdBlockStatus && (!r.gotStatus || len(r.descs) == 0) {
				t.Errorf("block status completed without extents")
			}
			for _, d := range r.descs {
				if d.length == 0 {
					t.Errorf("zero-length extent accepted")
				}
			}
			if r.cmd == cmdRead && checkCoverage(r.spans, r.off, uint64(r.length)) != nil {
				t.Errorf("read completed without covering its range")
			}
		}
	})
}

// FuzzNegotiate feeds arbitrary bytes to the handshake as the server's
// side of it: errors are fine, panics and hangs are not.
func FuzzNegotiate(f *testing.F) {
	greeting := be.AppendUint16(be.AppendUint64(be.AppendUint64(nil, magicNBD), magicOpt), hsFixedNewstyle|hsNoZeroes)
	reply := func(opt, typ uint32, data []byte) []byte {
		b := be.AppendUint64(nil, magicOptReply)
		b = be.AppendUint32(be.AppendUint32(be.AppendUint32(b, opt), typ), uint32(len(data)))
		return append(b, data...)
	}
	info := be.AppendUint16(be.AppendUint64(be.AppendUint16(nil, infoExport), 1<<30), tfHasFlags)
	bs := be.AppendUint32(be.AppendUint32(be.AppendUint32(be.AppendUint16(nil, infoBlockSize), 512), 4096), 1<<25)
	ok := bytes.Join([][]byte{
		greeting,
		reply(optStructuredReply, repAck, nil),
		reply(optSetMetaContext, repMetaContext, appendStringID(3, ContextBaseAllocation)),
		reply(optSetMetaContext, repAck, nil),
		reply(optGo, repInfo, info),
		reply(optGo, repInfo, bs),
		reply(optGo, repAck, nil),
	}, nil)
	f.Add(ok)
	f.Add(bytes.Join([][]byte{greeting, reply(optStructuredReply, repErrUnsup, nil), reply(optGo, repErrUnknown, []byte("no"))}, nil))
	f.Fuzz(func(t *testing.T, server []byte) {
		info, err := negotiate(io.Discard, bufio.NewReader(bytes.NewReader(server)), "disk", []string{ContextBaseAllocation})
		if err == nil && (info.size < 0 || info.minBlock > 64<<10) {
			t.Errorf("accepted size %d, minimum block %d", info.size, info.minBlock)
		}
	})
}
