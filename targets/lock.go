package targets

import (
	"fmt"
	"strings"
	"time"
)

// Object Lock retention modes, spelt as S3's x-amz-object-lock-mode.
const (
	// LockGovernance retention can be lifted early by a principal with
	// s3:BypassGovernanceRetention: a safety net against mistakes and
	// stolen writer keys, not against the account's administrators.
	LockGovernance = "GOVERNANCE"
	// LockCompliance retention cannot be shortened or removed by anyone,
	// the account root included, until it ends.
	LockCompliance = "COMPLIANCE"
)

// MaxLockDays bounds ObjectLock.Days at S3's limit of 100 years.
const MaxLockDays = 36500

// ObjectLock asks an S3 target to write objects with Object Lock
// retention, so that nobody holding the repository's credentials (a
// ransomware, a stolen key) can destroy them before Days have passed.
// The bucket must have Object Lock enabled; opening checks it.
type ObjectLock struct {
	// Mode is LockGovernance or LockCompliance.
	Mode string
	// Days each new object is retained, counted from its write by the
	// client's clock.
	Days int
	// Keys picks the keys that get retention. nil means ImmutableRepoKey.
	// Keys that are rewritten in place must never be picked: on a bucket
	// without versioning their next write would be refused.
	Keys func(key string) bool
}

// Check validates l.
func (l *ObjectLock) Check() error {
	if l.Mode != LockGovernance && l.Mode != LockCompliance {
		return fmt.Errorf("object lock: mode %q is neither %s nor %s", l.Mode, LockGovernance, LockCompliance)
	}
	if l.Days < 1 || l.Days > MaxLockDays {
		return fmt.Errorf("object lock: %d days is outside 1…%d", l.Days, MaxLockDays)
	}
	return nil
}

// Retention returns the mode and retain-until date for key written at
// now; ok is false when key gets no retention (or l is nil). The date is
// rounded up to a whole second, because S3 dates have no fractions in
// every client library: retention is never shorter than Days.
func (l *ObjectLock) Retention(key string, now time.Time) (mode string, until time.Time, ok bool) {
	if l == nil {
		return "", time.Time{}, false
	}
	keys := l.Keys
	if keys == nil {
		keys = ImmutableRepoKey
	}
	if !keys(key) {
		return "", time.Time{}, false
	}
	until = now.Add(time.Duration(l.Days) * 24 * time.Hour).UTC()
	if t := until.Truncate(time.Second); !t.Equal(until) {
		until = t.Add(time.Second)
	}
	return l.Mode, until, true
}

// ImmutableRepoKey reports whether key is one of the objects a
// repository writes once and never changes (see docs/format.md): the
// config, key files, packs, index files and snapshot manifests. Every
// other key (fence/, heartbeats/, leases/, condemned/, drills/,
// failovers/ and whatever a later version adds) is rewritten or deleted
// in normal operation, so it must not be locked; unknown keys are
// therefore mutable.
func ImmutableRepoKey(key string) bool {
	dir, rest, nested := strings.Cut(key, "/")
	if !nested {
		return key == "config"
	}
	switch dir {
	case "data", "index", "snapshots", "keys":
		return rest != ""
	}
	return false
}
