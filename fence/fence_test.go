package fence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drctl/drctl/internal/memtarget"
	"github.com/drctl/drctl/internal/s3test"
	"github.com/drctl/drctl/targets"
	"github.com/drctl/drctl/targets/local"
	"github.com/drctl/drctl/targets/open"
)

// backends are the targets the fence protocol must hold on: the in-memory
// fake, a local directory and a real S3 server (versitygw).
func backends(t *testing.T) map[string]targets.Target {
	t.Helper()
	lt, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	st, err := open.Open(t.Context(), "s3:"+srv.Endpoint+"/"+bucket, open.Options{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: srv.Region})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]targets.Target{"mem": memtarget.New(), "local": lt, "s3": st}
}

func TestTakeOverRace(t *testing.T) {
	for name, tg := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := NewStore(tg)
			const n = 10
			var wg sync.WaitGroup
			recs := make([]*Record, n)
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					recs[i], errs[i] = s.TakeOver(t.Context(), "web1", Claim{
						Owner: "dr", Run: fmt.Sprintf("run%d", i), RecoveryPoint: fmt.Sprintf("snap%d", i),
					})
				}()
			}
			wg.Wait()
			winner := -1
			for i := range n {
				if errs[i] == nil {
					if winner >= 0 {
						t.Fatalf("runs %d and %d both took the VM", winner, i)
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("no run took the VM: %v", errs)
			}
			want := fmt.Sprintf("run%d", winner)
			for i := range n {
				if i == winner {
					continue
				}
				var owned *OwnedError
				if !errors.As(errs[i], &owned) || owned.Record.Run != want || !strings.Contains(errs[i].Error(), "owned by site dr (failover run "+want) {
					t.Fatalf("loser %d: %v, want an OwnedError naming %s", i, errs[i], want)
				}
			}
			// The winner resumes with its pinned recovery point, whatever it
			// asks for now.
			rec, err := s.TakeOver(t.Context(), "web1", Claim{Owner: "dr", Run: want, RecoveryPoint: "other"})
			if err != nil || rec.RecoveryPoint != fmt.Sprintf("snap%d", winner) || rec.Epoch != 1 {
				t.Fatalf("resume: %+v, %v", rec, err)
			}
		})
	}
}

func TestCheckCommit(t *testing.T) {
	s := NewStore(memtarget.New())
	ctx := t.Context()
	if err := s.CheckCommit(ctx, "db", "primary"); err != nil {
		t.Fatalf("no fence: %v", err)
	}
	if _, err := s.TakeOver(ctx, "db", Claim{Owner: "dr", Run: "r1", RecoveryPoint: "0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	err := s.CheckCommit(ctx, "db", "primary")
	var fe *FencedError
	if !errors.Is(err, ErrFenced) || !errors.As(err, &fe) || fe.Record.Owner != "dr" ||
		!strings.Contains(err.Error(), "failed over to site dr") || !strings.Contains(err.Error(), "recovery point 01234567") {
		t.Fatalf("primary after failover: %v", err)
	}
	if err := s.CheckCommit(ctx, "db", "dr"); err != nil {
		t.Fatalf("owner: %v", err)
	}
	if err := s.CheckCommit(ctx, "other", "primary"); err != nil {
		t.Fatalf("other vm: %v", err)
	}
}

func TestDamagedFence(t *testing.T) {
	tg := memtarget.New()
	s := NewStore(tg)
	ctx := t.Context()
	if _, err := tg.Put(ctx, "fence/db", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	// A damaged fence must stop both sides: neither may assume it owns
	// the VM.
	if err := s.CheckCommit(ctx, "db", "primary"); err == nil || !strings.Contains(err.Error(), "fence/db is damaged") {
		t.Fatalf("commit with a damaged fence: %v", err)
	}
	if _, err := s.TakeOver(ctx, "db", Claim{Owner: "dr", Run: "r"}); err == nil {
		t.Fatal("takeover over a damaged fence succeeded")
	}
	if _, err := tg.Put(ctx, "fence/web", []byte(`{"vm":"db","owner":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, "web"); err == nil || !strings.Contains(err.Error(), `names vm "db"`) {
		t.Fatalf("copied fence: %v", err)
	}
}

func TestHeartbeats(t *testing.T) {
	tg := memtarget.New()
	s := NewStore(tg)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	ctx := t.Context()
	if err := s.Beat(ctx, "primary", "web1", "hv1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Beat(ctx, "primary", "web10", "hv1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Beat(ctx, "bad/site", "web1", ""); err == nil {
		t.Fatal("a site name with a slash was accepted")
	}
	tg.Put(ctx, "heartbeats/junk/web1", []byte("garbage"))

	cases := []struct {
		name  string
		at    time.Duration
		self  string
		fresh bool
	}{
		{"just written", time.Second, "dr", true},
		{"older than the lease", 6 * time.Minute, "dr", false},
		{"own heartbeat", time.Second, "primary", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.now = func() time.Time { return now.Add(c.at) }
			h, err := s.FreshPrimary(ctx, "web1", c.self, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if (h != nil) != c.fresh || (h != nil && (h.Site != "primary" || h.VM != "web1")) {
				t.Fatalf("fresh primary: %+v", h)
			}
		})
	}
	hbs, err := s.Heartbeats(context.Background(), "web1")
	if err != nil || len(hbs) != 1 {
		t.Fatalf("heartbeats of web1 (not web10, not the damaged one): %+v, %v", hbs, err)
	}
}
