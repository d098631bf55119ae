package targets_test

import (
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/targets"
)

func TestImmutableRepoKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"config", true},
		{"keys/0123456789abcdef0123456789abcdef", true},
		{"data/ab/ab01", true},
		{"index/a0648af2dc49a7da-20250301T120000Z-1a2b3c4d", true},
		{"snapshots/web1/20250301T120000.000000000Z-f503d09995fb1329", true},
		{"fence/web1", false},
		{"heartbeats/site-a", false},
		{"leases/a0648af2dc49a7da-1a2b3c4d", false},
		{"condemned/x", false},
		{"drills/20250301-x", false},
		{"failovers/web1/x", false},
		{"configs", false},
		{"config/x", false},
		{"data", false},
		{"data/", false},
		{"database/x", false},
		{"other", false},
		{"", false},
	} {
		if got := targets.ImmutableRepoKey(tc.key); got != tc.want {
			t.Errorf("ImmutableRepoKey(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestObjectLockCheck(t *testing.T) {
	for _, tc := range []struct {
		lock targets.ObjectLock
		err  string // substring; "" means valid
	}{
		{targets.ObjectLock{Mode: targets.LockGovernance, Days: 30}, ""},
		{targets.ObjectLock{Mode: targets.LockCompliance, Days: targets.MaxLockDays}, ""},
		{targets.ObjectLock{Mode: "governance", Days: 30}, `mode "governance"`},
		{targets.ObjectLock{Days: 30}, `mode ""`},
		{targets.ObjectLock{Mode: targets.LockGovernance}, "0 days"},
		{targets.ObjectLock{Mode: targets.LockGovernance, Days: targets.MaxLockDays + 1}, "36501 days"},
	} {
		err := tc.lock.Check()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Check() = %v, want %q", tc.lock, err, tc.err)
		}
	}
}

func TestObjectLockRetention(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 250, time.FixedZone("CET", 3600))
	day := targets.ObjectLock{Mode: targets.LockCompliance, Days: 1}
	fences := targets.ObjectLock{Mode: targets.LockGovernance, Days: 2, Keys: func(k string) bool { return strings.HasPrefix(k, "fence/") }}
	for _, tc := range []struct {
		name  string
		lock  *targets.ObjectLock
		key   string
		mode  string
		until time.Time
	}{
		{"none", nil, "config", "", time.Time{}},
		{"default keys", &day, "data/ab/ab01", targets.LockCompliance, time.Date(2026, 3, 2, 11, 0, 1, 0, time.UTC)},
		{"default keys, mutable", &day, "fence/web1", "", time.Time{}},
		{"own keys", &fences, "fence/web1", targets.LockGovernance, time.Date(2026, 3, 3, 11, 0, 1, 0, time.UTC)},
		{"own keys, other", &fences, "config", "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode, until, ok := tc.lock.Retention(tc.key, now)
			if ok != (tc.mode != "") || mode != tc.mode || !until.Equal(tc.until) || ok && until.Location() != time.UTC {
				t.Errorf("Retention(%q) = %q %v %v, want %q %v", tc.key, mode, until, ok, tc.mode, tc.until)
			}
		})
	}
	if _, until, _ := day.Retention("config", now.Truncate(time.Second)); !until.Equal(now.Truncate(time.Second).Add(24 * time.Hour)) {
		t.Errorf("a whole-second time was rounded: %v", until)
	}
}
