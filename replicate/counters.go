package replicate

import "sync/atomic"

// Counters is live progress of a replication, updated as it runs and read
// by progress displays and metrics. All fields are atomics.
type Counters struct {
	BytesTotal   atomic.Int64 // bytes of all disks to scan
	BytesScanned atomic.Int64 // bytes of disk address space passed (read or skipped as holes)
	BytesRead    atomic.Int64 // bytes actually read from the disks
	BytesChanged atomic.Int64 // changed data bytes found
	BytesNew     atomic.Int64 // plaintext bytes of new blobs
	BytesStored  atomic.Int64 // bytes of packs written
}
