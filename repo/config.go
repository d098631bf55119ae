package repo

import (
	"fmt"

	"github.com/drctl/drctl/chunk"
)

// FormatVersion is the repository format this code writes and reads.
const FormatVersion = 1

// Config is the repository-wide configuration, stored sealed under the
// object "config" and written once with a create-only put.
type Config struct {
	Version   int          `json:"version"`
	ID        string       `json:"id"`
	Chunker   chunk.Params `json:"chunker"`
	BlockSize int          `json:"block_size"` // change-detection granularity, bytes
	PageSize  int64        `json:"page_size"`  // disk bytes covered by one map page
	PackSize  int          `json:"pack_size"`  // target pack object size, bytes
	// SmallRun is the longest dirty run stored as one extent blob instead
	// of going through the chunker.
	SmallRun int `json:"small_run"`
}

// Defaults for a new repository. The chunk sizes are a trade between
// dedup of long rewrites (smaller is better) and metadata per GiB; small
// scattered writes never reach the chunker (they become extent blobs), so
// the average can stay large.
const (
	DefaultBlockSize   = 4096
	DefaultPageSize    = 256 << 20
	DefaultPackSize    = 16 << 20
	DefaultSmallRun    = 256 << 10
	DefaultMinChunk    = 256 << 10
	DefaultMaxChunk    = 2 << 20
	DefaultAverageBits = 18 // 256 KiB past the minimum: ~512 KiB mean
)

// NewConfig makes the configuration of a new repository with a random
// polynomial and id.
func NewConfig() (Config, error) {
	pol, err := chunk.RandomPolynomial()
	if err != nil {
		return Config{}, fmt.Errorf("pick chunker polynomial: %w", err)
	}
	return Config{
		Version: FormatVersion,
		ID:      randomHex(16),
		Chunker: chunk.Params{
			Pol: pol, MinSize: DefaultMinChunk, MaxSize: DefaultMaxChunk, AverageBits: DefaultAverageBits,
		},
		BlockSize: DefaultBlockSize,
		PageSize:  DefaultPageSize,
		PackSize:  DefaultPackSize,
		SmallRun:  DefaultSmallRun,
	}, nil
}

// Validate checks a configuration read from a repository.
func (c Config) Validate() error {
	if c.Version != FormatVersion {
		return fmt.Errorf("repository format version %d (this drctl reads %d): %w", c.Version, FormatVersion, ErrUnsupported)
	}
	if err := c.Chunker.Validate(); err != nil {
		return fmt.Errorf("repository config: %w", err)
	}
	switch {
	case c.BlockSize < 512 || c.BlockSize&(c.BlockSize-1) != 0:
		return fmt.Errorf("repository config: block size %d is not a power of two ≥ 512", c.BlockSize)
	case c.PageSize < int64(c.BlockSize) || c.PageSize%int64(c.BlockSize) != 0:
		return fmt.Errorf("repository config: page size %d is not a multiple of the block size", c.PageSize)
	case c.PackSize < 1<<20 || c.PackSize > 128<<20:
		return fmt.Errorf("repository config: pack size %d outside 1 MiB..128 MiB", c.PackSize)
	case c.SmallRun < c.BlockSize:
		return fmt.Errorf("repository config: small-run size %d below the block size", c.SmallRun)
	}
	return nil
}
