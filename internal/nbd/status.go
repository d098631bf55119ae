package nbd

import (
	"context"
	"fmt"
)

// Extent is a run of the export with the same metadata flags.
type Extent struct {
	Off, Len int64
	Flags    uint32 // StateHole, StateZero or StateDirty, by context
}

// Range is a run of bytes of the export.
type Range struct {
	Off, Len int64
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

// BlockStatus reports the flags of metaContext, one of the contexts
// granted at Dial, over [off, off+length). The extents are sorted, cover
// exactly that range, and adjacent ones differ in flags.
//
// The server may describe less than it was asked for per request (QEMU
// sends at most 131072 extents per reply), and a request cannot exceed
// 4 GiB, so this sends as many requests as it takes. The server answers every request for all the contexts selected at
// Dial, so select only those needed.
func (c *Client) BlockStatus(ctx context.Context, metaContext string, off, length int64) ([]Extent, error) {
	id, ok := c.contexts[metaContext]
	if !ok {
		return nil, fmt.Errorf("nbd: block status of %s: %w (granted: %s)", metaContext, ErrNoContext, c.grantedContexts())
	}
	if err := c.checkRange(off, length); err != nil {
		return nil, fmt.Errorf("nbd: block status of %s: %w", metaContext, err)
	}
	var out []Extent
	end := off + length
	a := int64(c.minBlock)
	for pos := off; pos < end; {
		// Requests start and end on the server's minimum block size;
		// the extents are clipped to what was asked for.
		reqOff := pos - pos%a
		reqLen := min(alignUp(end, a), c.size) - reqOff
		reqLen = min(reqLen, maxStatusRequest)
		descs, err := c.blockStatus(ctx, id, reqOff, reqLen)
		if err != nil {
			return nil, fmt.Errorf("nbd: block status of %s at offset %d: %w", metaContext, reqOff, err)
		}
		at := reqOff
		for _, d := range descs {
			next := end
			if int64(d.length) < end-at {
				next = at + int64(d.length)
			}
			if s := max(at, pos); next > s {
				out = appendExtent(out, Extent{Off: s, Len: next - s, Flags: d.flags})
			}
			at = next
			if at >= end {
				break
			}
		}
		if at <= pos {
			return nil, fmt.Errorf("nbd: block status of %s at offset %d: %w", metaContext, pos,
				protocolErrorf("reply ends at offset %d, not past the start", at))
		}
		pos = at
	}
	return out, nil
}

// blockStatus sends one NBD_CMD_BLOCK_STATUS and returns the descriptors
// for context id.
func (c *Client) blockStatus(ctx context.Context, id uint32, off, length int64) ([]descriptor, error) {
	r := newRequest(cmdBlockStatus, uint64(off), uint32(length))
	r.ctxID = id
	if err := c.start(ctx, r); err != nil {
		return nil, err
	}
	if err := c.wait(ctx, r); err != nil {
		return nil, err
	}
	return r.descs, nil
}

// appendExtent appends e, merging it into the last extent when they touch
// and have the same flags.
func appendExtent(out []Extent, e Extent) []Extent {
	if n := len(out); n > 0 && out[n-1].Flags == e.Flags && out[n-1].Off+out[n-1].Len == e.Off {
		out[n-1].Len += e.Len
		return out
	}
	return append(out, e)
}

// appendRange appends r, merging it into the last range when they touch.
func appendRange(out []Range, r Range) []Range {
	if n := len(out); n > 0 && out[n-1].End() == r.Off {
		out[n-1].Len += r.Len
		return out
	}
	return append(out, r)
}

// DirtyExtents lists the dirty ranges of the whole export in
// bitmapContext, a granted qemu:dirty-bitmap:NAME context (see
// DirtyBitmapContext): the blocks written while the bitmap was recording,
// in units of its granularity.
func (c *Client) DirtyExtents(ctx context.Context, bitmapContext string) ([]Range, error) {
	exts, err := c.BlockStatus(ctx, bitmapContext, 0, c.size)
	if err != nil {
		return nil, err
	}
	return selectRanges(exts, func(flags uint32) bool { return flags&StateDirty != 0 }), nil
}

// Allocation is the base:allocation map of a whole export, for a full
// copy that skips what need not be read.
type Allocation struct {
	// Allocated: storage is allocated (StateHole clear).
	Allocated []Range
	// Zero: reads as zeros (StateZero set), allocated or not. A copier
	// can skip these when the target starts out zeroed.
	Zero []Range
	// Data: everything not known to be zero, which a copier must read.
	// It includes holes without StateZero, whose contents the server
	// does not know (for example ones that read from a backing file).
	Data []Range
}

// AllocatedExtents reads the base:allocation context, which must have
// been granted at Dial, for the whole export.
func (c *Client) AllocatedExtents(ctx context.Context) (Allocation, error) {
	exts, err := c.BlockStatus(ctx, ContextBaseAllocation, 0, c.size)
	if err != nil {
		return Allocation{}, err
	}
	return Allocation{
		Allocated: selectRanges(exts, func(f uint32) bool { return f&StateHole == 0 }),
		Zero:      selectRanges(exts, func(f uint32) bool { return f&StateZero != 0 }),
		Data:      selectRanges(exts, func(f uint32) bool { return f&StateZero == 0 }),
	}, nil
}

// selectRanges returns the merged ranges of the extents whose flags keep
// accepts.
func selectRanges(exts []Extent, keep func(flags uint32) bool) []Range {
	var out []Range
	for _, e := range exts {
		if keep(e.Flags) {
			out = appendRange(out, Range{Off: e.Off, Len: e.Len})
		}
	}
	return out
}
