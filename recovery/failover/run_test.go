package failover

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drctl/drctl/fence"
	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/replicate"
	"github.com/drctl/drctl/repo"
)

// TestRunAdoptAndResume fails over a VM replicated from an image file
// (no hardware spec, no bootable disk: QEMU sits in the BIOS, which is
// enough for a replica without health checks) and covers what the e2e
// test does not: a run whose state directory was lost is refused until an
// operator adopts it, and an adopted run's rerun is a resume.
func TestRunAdoptAndResume(t *testing.T) {
	ctx := t.Context()
	mt := memtarget.New()
	r, err := repo.Init(ctx, mt, "pw", repo.Options{KDF: repo.FastKDF})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "db.img")
	if err := os.WriteFile(img, []byte("some data"), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := replicate.Run(ctx, r, replicate.Options{VM: "db", Disks: []replicate.Disk{{Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	p := testPlan(t, "name: p\naccel: tcg\ngroups: [{name: g, vms: [{vm: db, memory_mib: 64}]}]\n")

	// A run took the fence and then its machine (and state dir) was lost.
	if _, err := fence.NewStore(mt).TakeOver(ctx, "db", fence.Claim{Owner: "dr", Run: "lostrun1", RecoveryPoint: snap.ID}); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	opts := Options{Plan: p, Site: "dr", StateDir: state}
	_, err = Run(ctx, r, opts)
	var owned *fence.OwnedError
	if !errors.As(err, &owned) || owned.Record.Run != "lostrun1" {
		t.Fatalf("failover over a lost run's fence: %v", err)
	}
	t.Cleanup(func() { StopReplicas(t.Context(), p, state, time.Second) })

	opts.AdoptRun = "lostrun1"
	res, err := Run(ctx, r, opts)
	if err != nil || !res.OK || res.Run != "lostrun1" || res.VMs[0].Status != StatusHealthy || res.VMs[0].Snapshot != snap.ID {
		t.Fatalf("adopted run: %+v, %v", res, err)
	}
	// Rerun without the flag: the state directory now names the run.
	opts.AdoptRun = ""
	res, err = Run(ctx, r, opts)
	if err != nil || res.Run != "lostrun1" || !res.VMs[0].AlreadyRunning {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	opts.AdoptRun = "otherrun"
	if _, err := Run(ctx, r, opts); err == nil {
		t.Fatal("adopted a second run into a state directory that has one")
	}
	stopped, err := StopReplicas(ctx, p, state, time.Second)
	if err != nil || len(stopped) != 1 {
		t.Fatalf("stop: %v %v", stopped, err)
	}
	// One record per run, rewritten by each rerun with its latest result.
	recs, err := Records(ctx, mt)
	if err != nil || len(recs) != 1 || !recs[0].VMs[0].AlreadyRunning {
		t.Fatalf("failover records: %+v, %v", recs, err)
	}
}
