package qga_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/qga"
	"github.com/drctl/drctl/internal/qga/qgatest"
)

func TestFreezeThaw(t *testing.T) {
	f := qgatest.Start(t, &qgatest.Agent{})
	c, err := qga.Dial(t.Context(), f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Freeze(t.Context()); err != nil || n != 2 {
		t.Fatalf("freeze: %d, %v", n, err)
	}
	if n, err := c.Thaw(t.Context()); err != nil || n != 2 {
		t.Fatalf("thaw: %d, %v", n, err)
	}
	if got := f.Commands(); !slices.Equal(got, []string{"guest-sync-delimited", "guest-fsfreeze-freeze", "guest-fsfreeze-thaw"}) {
		t.Fatalf("commands %v", got)
	}
}

func TestFreezeError(t *testing.T) {
	f := qgatest.Start(t, &qgatest.Agent{FailFreeze: true})
	c, err := qga.Dial(t.Context(), f.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Freeze(t.Context())
	var qe *qga.Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Fatalf("freeze error = %v", err)
	}
}

func TestHungAgentTimesOut(t *testing.T) {
	f := qgatest.Start(t, &qgatest.Agent{Silent: true})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := qga.Dial(ctx, f.Socket); err == nil {
		t.Fatal("dial of a silent agent succeeded")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a silent agent held the caller for %v", el)
	}
}
