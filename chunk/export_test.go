package chunk

// SealRaw stores plain the way Codec.Seal does but never compresses it, so
// that a fuzz target sealing its input runs the same code for the same
// input (zstd's encoder keeps state between calls, which makes coverage
// noisy and stalls input minimisation).
func SealRaw(c *Codec, plain []byte) []byte { return sealBlob(c.key, modeRaw, plain) }
