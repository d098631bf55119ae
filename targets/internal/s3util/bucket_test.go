package s3util

import (
	"errors"
	"strings"
	"testing"

	"github.com/drctl/drctl/targets"
)

func TestLockChecked(t *testing.T) {
	b := NewBucket(Config{Bucket: "dr"}, "http://h:1", "http://h:1")
	c := Classifier{NoBucket: b.NoBucket}
	answer := func(a Answer) error { return c.Classify(t.Context(), errors.New("library error"), a, nil) }
	for _, tc := range []struct {
		name    string
		err     error
		enabled bool
		want    error    // errors.Is; nil: no error
		msg     []string // substrings
	}{
		{name: "enabled", enabled: true},
		{name: "disabled", want: targets.ErrNoObjectLock,
			msg: []string{"bucket dr at http://h:1 does not have Object Lock enabled", "create-bucket --object-lock-enabled-for-bucket", "put-object-lock-configuration", "remove object_lock"}},
		{name: "no configuration", err: answer(Answer{404, "ObjectLockConfigurationNotFoundError", ""}), want: targets.ErrNoObjectLock,
			msg: []string{"bucket dr at http://h:1 does not have Object Lock enabled"}},
		{name: "not implemented", err: answer(Answer{501, "NotImplemented", "no"}), want: targets.ErrNoObjectLock,
			msg: []string{"the server at http://h:1 does not implement Object Lock (HTTP 501 NotImplemented: no)"}},
		{name: "no bucket", err: answer(Answer{404, "NoSuchBucket", ""}), want: targets.ErrNoBucket, msg: []string{"bucket dr does not exist"}},
		{name: "denied", err: answer(Answer{403, "AccessDenied", ""}), want: targets.ErrAccessDenied, msg: []string{"s3:GetBucketObjectLockConfiguration"}},
		{name: "unavailable", err: answer(Answer{503, "SlowDown", ""}), msg: []string{"check object lock of bucket dr at http://h:1: HTTP 503 SlowDown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.LockChecked(tc.err, tc.enabled)
			switch {
			case tc.want == nil && tc.msg == nil && err != nil:
				t.Fatalf("got %v, want nil", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			case tc.msg != nil && err == nil:
				t.Fatalf("got nil, want an error")
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not say %q", err, m)
				}
			}
			if errors.Is(tc.want, targets.ErrNoObjectLock) && targets.IsTransient(err) {
				t.Errorf("%v is transient", err)
			}
		})
	}
}
