package chunk

import (
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Pol is a chunker polynomial, random per repository so that chunk
// boundaries do not reveal content across repositories.
type Pol = chunker.Pol

// RandomPolynomial picks a new irreducible polynomial.
func RandomPolynomial() (Pol, error) { return chunker.RandomPolynomial() }

// Params are a repository's content-defined chunking parameters.
type Params struct {
	Pol         Pol  `json:"polynomial"`
	MinSize     uint `json:"min_size"`
	MaxSize     uint `json:"max_size"`
	AverageBits int  `json:"average_bits"` // average chunk size is about MinSize + 2^AverageBits
}

// Validate checks the parameters are usable.
func (p Params) Validate() error {
	switch {
	case p.Pol.Deg() != 53 || !p.Pol.Irreducible():
		return fmt.Errorf("chunker polynomial %v is not irreducible of degree 53", p.Pol)
	case p.MinSize < 64 || p.MaxSize <= p.MinSize:
		// The chunker's 64-byte window is subtracted from MinSize unchecked.
		return fmt.Errorf("chunk sizes min %d max %d: need 64 ≤ min < max", p.MinSize, p.MaxSize)
	case p.AverageBits < 10 || p.AverageBits > 26:
		return fmt.Errorf("average chunk bits %d outside 10..26", p.AverageBits)
	}
	return nil
}

// Chunker splits a stream into content-defined chunks.
type Chunker struct {
	c *chunker.Chunker
	p Params
}

// NewChunker makes a chunker for p; call Reset before each stream.
func NewChunker(p Params) *Chunker {
	c := chunker.NewWithBoundaries(nil, p.Pol, p.MinSize, p.MaxSize)
	c.SetAverageBits(p.AverageBits)
	return &Chunker{c: c, p: p}
}

// Reset starts a new stream.
func (c *Chunker) Reset(rd io.Reader) {
	c.c.ResetWithBoundaries(rd, c.p.Pol, c.p.MinSize, c.p.MaxSize)
	c.c.SetAverageBits(c.p.AverageBits)
}

// Next returns the next chunk's bytes, stored in buf (which needs room for
// MaxSize bytes), or io.EOF at the end of the stream.
func (c *Chunker) Next(buf []byte) ([]byte, error) {
	ch, err := c.c.Next(buf)
	if err != nil {
		return nil, err
	}
	return ch.Data, nil
}
