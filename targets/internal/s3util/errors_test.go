package s3util

import (
	"context"
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/drctl/drctl/targets"
)

var errNoBucket = errors.New("no bucket")

// TestClassify pins the rules, and where the two libraries' settings make
// them differ, both outcomes.
func TestClassify(t *testing.T) {
	minio := Classifier{NoBucket: func() error { return errNoBucket }}
	aws := Classifier{
		NoBucket:    minio.NoBucket,
		WrongRegion: func(error) string { return "bucket b is in region r" },
		NeedStatus:  true,
	}
	sdk := errors.New("library error")
	for _, tc := range []struct {
		name      string
		c         Classifier
		err       error
		a         Answer
		lost      error
		want      error  // errors.Is
		msg       string // exact, if set
		transient bool
	}{
		{name: "no bucket", c: minio, a: Answer{404, "NoSuchBucket", ""}, want: errNoBucket},
		{name: "not found", c: minio, a: Answer{404, "", ""}, want: targets.ErrNotFound},
		{name: "no such upload", c: minio, a: Answer{404, "NoSuchUpload", "gone"}, msg: "HTTP 404 NoSuchUpload: gone"},
		{name: "precondition", c: minio, a: Answer{412, "PreconditionFailed", ""}, lost: targets.ErrExists, want: targets.ErrExists},
		{name: "precondition unasked", c: minio, a: Answer{412, "PreconditionFailed", ""}, msg: "HTTP 412 PreconditionFailed"},
		{name: "conflict", c: minio, a: Answer{409, "ConditionalRequestConflict", "busy"}, lost: targets.ErrPrecondition,
			want: targets.ErrPrecondition, msg: "precondition failed (HTTP 409 ConditionalRequestConflict: busy)"},
		{name: "conflict unasked", c: minio, a: Answer{409, "ConditionalRequestConflict", ""}, transient: true},
		{name: "range", c: minio, a: Answer{416, "InvalidRange", ""}, want: targets.ErrRange},
		{name: "denied", c: minio, a: Answer{403, "AccessDenied", ""}, want: targets.ErrAccessDenied},
		{name: "locked", c: aws, a: Answer{403, "AccessDenied", "Access Denied because object protected by object lock."}, want: targets.ErrLocked,
			msg: "object is under object lock retention: HTTP 403 AccessDenied: Access Denied because object protected by object lock."},
		{name: "locked, create-only", c: aws, a: Answer{403, "AccessDenied", "Access Denied because object protected by object lock."}, lost: targets.ErrExists,
			want: targets.ErrLocked, msg: "object already exists, object is under object lock retention: HTTP 403 AccessDenied: Access Denied because object protected by object lock."},
		{name: "locked, minio", c: minio, a: Answer{400, "InvalidRequest", "Object is WORM protected and cannot be overwritten"}, want: targets.ErrLocked},
		{name: "locked, own code", c: minio, a: Answer{403, "ObjectLocked", ""}, want: targets.ErrLocked},
		{name: "other invalid request", c: minio, a: Answer{400, "InvalidRequest", "Bucket is missing ObjectLockConfiguration"},
			msg: "HTTP 400 InvalidRequest: Bucket is missing ObjectLockConfiguration"},
		{name: "no lock configuration", c: aws, a: Answer{404, "ObjectLockConfigurationNotFoundError", "none"}, want: targets.ErrNoObjectLock},
		{name: "throttled", c: minio, a: Answer{503, "SlowDown", ""}, transient: true},
		{name: "other", c: minio, a: Answer{400, "BadDigest", "x"}, msg: "HTTP 400 BadDigest: x"},
		{name: "refused", c: minio, err: syscall.ECONNREFUSED, transient: true},
		{name: "cut", c: minio, err: io.ErrUnexpectedEOF, transient: true,
			msg: "connection closed by the server without a complete answer: unexpected EOF"},
		{name: "own error", c: minio, err: sdk, want: sdk, msg: "library error"},
		{name: "redirect unasked", c: minio, a: Answer{301, "PermanentRedirect", "elsewhere"}, msg: "HTTP 301 PermanentRedirect: elsewhere"},
		{name: "redirect", c: aws, a: Answer{301, "PermanentRedirect", "elsewhere"}, msg: "bucket b is in region r"},
		{name: "code without status", c: minio, err: sdk, a: Answer{0, "InternalError", "bad header"}, msg: "HTTP 0 InternalError: bad header"},
		{name: "code without status, aws", c: aws, err: sdk, a: Answer{0, "InternalError", "bad header"}, msg: "library error"},
		{name: "known code without status, aws", c: aws, err: sdk, a: Answer{0, "NoSuchKey", ""}, want: targets.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			if err == nil {
				err = sdk
			}
			got := tc.c.Classify(t.Context(), err, tc.a, tc.lost)
			if tc.want != nil && !errors.Is(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if tc.msg != "" && got.Error() != tc.msg {
				t.Errorf("got %q, want %q", got.Error(), tc.msg)
			}
			if targets.IsTransient(got) != tc.transient {
				t.Errorf("%v: transient %v, want %v", got, !tc.transient, tc.transient)
			}
			if !errors.Is(got, err) && tc.want == nil && !tc.transient {
				t.Errorf("%v does not wrap the library's error", got)
			}
		})
	}

	// A locked object is no permission problem: prune waits for the one
	// and fails on the other.
	if err := minio.Classify(t.Context(), sdk, Answer{403, "AccessDenied", "Access Denied because object protected by object lock."}, nil); errors.Is(err, targets.ErrAccessDenied) {
		t.Errorf("locked object: %v is also ErrAccessDenied", err)
	}

	if err := minio.Classify(t.Context(), sdk, Answer{403, "AccessDenied", "Access Denied because object protected by object lock."}, targets.ErrExists); !errors.Is(err, targets.ErrExists) {
		t.Errorf("create-only write over a locked object: %v is not ErrExists", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := minio.Classify(ctx, syscall.ECONNRESET, Answer{}, nil); got != context.Canceled {
		t.Errorf("cancelled call: %v, want context.Canceled", got)
	}
}
