// Package targettest is the conformance suite every targets.Target passes:
// the local directory, S3 through aws-sdk-go-v2 and S3-compatible stores
// through minio-go. Behaviour the repository relies on (create-only
// commits, compare-and-swap, ordered paginated listings, range reads,
// cancellation) is pinned here once instead of per implementation.
package targettest

import (
	"testing"

	"github.com/drctl/drctl/targets"
)

// LargeSize is the size of the object in the multipart tests. Factories
// should configure a multipart threshold well below it (5 MiB, the S3
// minimum part size, gives four parts).
const LargeSize = 20 << 20

// Run runs the suite. newTarget must return an empty target, fresh for
// each call (a new directory, a new bucket or a new prefix).
func Run(t *testing.T, newTarget func(t *testing.T) targets.Target) {
	tests := []struct {
		name string
		fn   func(*testing.T, targets.Target)
	}{
		{"Roundtrip", testRoundtrip},
		{"Overwrite", testOverwrite},
		{"GetRange", testGetRange},
		{"Missing", testMissing},
		{"InvalidKeys", testInvalidKeys},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"PutIfMatch", testPutIfMatch},
		{"PutIfMatchRace", testPutIfMatchRace},
		{"List", testList},
		{"ListOrder", testListOrder},
		{"EmptyObject", testEmptyObject},
		{"Large", testLarge},
		{"Cancel", testCancel},
		{"CancelDuringWrite", testCancelDuringWrite},
		{"NestedKeys", testNestedKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newTarget(t))
		})
	}
}
