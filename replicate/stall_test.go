package replicate_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
	"github.com/drctl/drctl/targets"
)

// TestStalledTargetFails: the target stops answering (its puts hang, with
// no error). The run fails with ErrStalled after the stall timeout, not a cancellation, commits nothing, and a run after
// the target is back stores the snapshot.
func TestStalledTargetFails(t *testing.T) {
	r, f, _, img := faultyRepo(t)
	// The disk is read (progress) until uploads back up; they never end.
	f.Add(targets.Fault{Ops: []targets.Op{targets.OpPut}, KeyPrefix: "data/", Delay: time.Hour})
	start := time.Now()
	_, err := replicate.Run(t.Context(), r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}, StallTimeout: time.Second})
	took := time.Since(start)
	if !errors.Is(err, replicate.ErrStalled) || errors.Is(err, context.Canceled) {
		t.Fatalf("run against a hung target: %v, want ErrStalled (and no cancellation)", err)
	}
	if took > 10*time.Second {
		t.Fatalf("the stalled run took %v to give up with a 1 s stall timeout", took)
	}
	t.Logf("gave up after %v: %v", took.Round(10*time.Millisecond), err)
	if refs, _ := r.ListSnapshots(t.Context(), "vm"); len(refs) != 0 {
		t.Fatal("a stalled run committed a snapshot")
	}
	f.Clear()
	if _, err := replicate.Run(t.Context(), r, replicate.Options{VM: "vm", Disks: []replicate.Disk{{Path: img}}, StallTimeout: time.Second}); err != nil {
		t.Fatalf("run after the target came back: %v", err)
	}
}

// TestStalledQEMUFails: a QMP socket whose QEMU greets and then never
// answers (a hung QEMU) ends the run with ErrStalled.
func TestStalledQEMUFails(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				enc, dec := json.NewEncoder(c), json.NewDecoder(c)
				enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 8, "minor": 2, "micro": 0}}, "capabilities": []string{}}})
				var cmd map[string]any
				if dec.Decode(&cmd) == nil { // qmp_capabilities
					enc.Encode(map[string]any{"return": map[string]any{}, "id": cmd["id"]})
				}
				for dec.Decode(&cmd) == nil { // then silence
				}
			}()
		}
	}()
	r, err := repo.Init(t.Context(), memtarget.New(), "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = replicate.Run(t.Context(), r, replicate.Options{VM: "vm", QEMU: &replicate.QEMU{QMPSocket: sock}, StallTimeout: time.Second})
	if !errors.Is(err, replicate.ErrStalled) {
		t.Fatalf("run against a hung QEMU: %v, want ErrStalled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v to give up", took)
	}
}
