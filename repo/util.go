package repo

import (
	"crypto/rand"
	"encoding/hex"
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("read random: " + err.Error())
	}
	return hex.EncodeToString(b)
}
