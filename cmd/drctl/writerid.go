package main

import (
	"crypto/rand"
	"encoding/hex"
)

func newWriterID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
