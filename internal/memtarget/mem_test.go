package memtarget_test

import (
	"testing"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/targettest"
)

// The in-memory target behaves like the real ones, so unit tests that use
// it prove something about the real targets.
func TestConformance(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targets.Target { return memtarget.New() })
}
