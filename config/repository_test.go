package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestObjectLock(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *ObjectLock // when the file is valid
		errs []string    // substrings of the error; "FILE" is replaced by the file path
	}{
		{name: "none", yaml: "url: s3:https://s3.example.net/b/p\n"},
		{name: "null", yaml: "url: s3:https://s3.example.net/b/p\n    object_lock:\n"},
		{name: "governance", yaml: "url: s3:https://s3.example.net/b/p\n    object_lock: {mode: governance, days: 30}\n",
			want: &ObjectLock{Mode: "GOVERNANCE", Days: 30}},
		{name: "compliance, upper case", yaml: "url: s3://b/p\n    object_lock:\n      mode: COMPLIANCE\n      days: 36500\n",
			want: &ObjectLock{Mode: "COMPLIANCE", Days: 36500}},
		{name: "aws", yaml: "url: s3:aws/b\n    object_lock: {mode: compliance, days: 1}\n", want: &ObjectLock{Mode: "COMPLIANCE", Days: 1}},
		{name: "empty", yaml: "url: s3:aws/b\n    object_lock: {}\n",
			errs: []string{"FILE:5: repositories.r.object_lock.mode: missing: set governance", "or compliance (nobody can, not even the account root)",
				"FILE:5: repositories.r.object_lock.days: missing: set how many days new objects stay locked"}},
		{name: "bad mode", yaml: "url: s3:aws/b\n    object_lock:\n      mode: legal-hold\n      days: 7\n",
			errs: []string{"FILE:6: repositories.r.object_lock.mode: \"legal-hold\" is not an object lock mode: use governance or compliance"}},
		{name: "negative days", yaml: "url: s3:aws/b\n    object_lock:\n      mode: governance\n      days: -3\n",
			errs: []string{"FILE:7: repositories.r.object_lock.days: -3 is not between 1 and 36500 (100 years)"}},
		{name: "too many days", yaml: "url: s3:aws/b\n    object_lock: {mode: governance, days: 36501}\n",
			errs: []string{"repositories.r.object_lock.days: 36501 is not between 1 and 36500"}},
		{name: "days not a number", yaml: "url: s3:aws/b\n    object_lock: {mode: governance, days: 1w}\n",
			errs: []string{"FILE:5: repositories.r.object_lock.days: expected a whole number, got \"1w\""}},
		{name: "unknown key", yaml: "url: s3:aws/b\n    object_lock: {mode: governance, day: 7}\n",
			errs: []string{"FILE:5: repositories.r.object_lock.day: unknown key (did you mean days?)"}},
		{name: "local directory", yaml: "url: /srv/drctl\n    object_lock: {mode: governance, days: 7}\n",
			errs: []string{"FILE:5: repositories.r.object_lock: set for /srv/drctl, which is not an S3 bucket: object lock needs an S3 bucket with Object Lock enabled; use an s3: URL or remove object_lock"}},
		{name: "local: URL", yaml: "url: local:/srv/drctl\n    object_lock: {mode: governance, days: 7}\n",
			errs: []string{"repositories.r.object_lock: set for local:/srv/drctl, which is not an S3 bucket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), FileName, "repositories:\n  r:\n    password: x\n    "+tt.yaml, 0o600)
			c, err := Load(p, nil)
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("Load succeeded, want errors %q", tt.errs)
				}
				for _, w := range tt.errs {
					if w = strings.ReplaceAll(w, "FILE", p); !strings.Contains(err.Error(), w) {
						t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			r, err := c.ResolveRepository("r")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.ObjectLock, tt.want) {
				t.Errorf("ObjectLock = %+v, want %+v", r.ObjectLock, tt.want)
			}
		})
	}
}
