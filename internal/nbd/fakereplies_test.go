package nbd

// Builders of the fake server's replies, also used to make fuzz seeds.

func (sc *serverConn) send(b []byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.Write(b)
}

func (sc *serverConn) simple(cookie uint64, errno uint32, data []byte) {
	b := be.AppendUint32(nil, magicSimple)
	b = be.AppendUint32(b, errno)
	b = be.AppendUint64(b, cookie)
	sc.send(append(b, data...))
}

func chunkBytes(cookie uint64, flags, typ uint16, payload []byte) []byte {
	b := be.AppendUint32(nil, magicStructured)
	b = be.AppendUint16(b, flags)
	b = be.AppendUint16(b, typ)
	b = be.AppendUint64(b, cookie)
	b = be.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func (sc *serverConn) chunk(cookie uint64, flags, typ uint16, payload []byte) {
	sc.send(chunkBytes(cookie, flags, typ, payload))
}

func dataPayload(off uint64, data []byte) []byte {
	return append(be.AppendUint64(nil, off), data...)
}

func holePayload(off uint64, n uint32) []byte {
	return be.AppendUint32(be.AppendUint64(nil, off), n)
}

func errorPayload(errno uint32, msg string) []byte {
	b := be.AppendUint32(nil, errno)
	b = be.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

func (sc *serverConn) dataChunk(cookie uint64, flags uint16, off uint64, data []byte) {
	sc.chunk(cookie, flags, chunkOffsetData, dataPayload(off, data))
}

func (sc *serverConn) holeChunk(cookie uint64, flags uint16, off uint64, n uint32) {
	sc.chunk(cookie, flags, chunkOffsetHole, holePayload(off, n))
}

func (sc *serverConn) errorReply(cookie uint64, errno uint32, msg string) {
	if !sc.structured {
		sc.simple(cookie, errno, nil)
		return
	}
	sc.chunk(cookie, replyFlagDone, chunkError, errorPayload(errno, msg))
}

// testData is n bytes with runs of zeros (holes) between runs of data.
func testData(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		if (i/4096)%3 != 1 {
			p[i] = byte(i*7 + i/251)
		}
	}
	return p
}
