package targets_test

import (
	"strings"
	"testing"

	"github.com/drctl/drctl/targets"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in   string
		want targets.URL
	}{
		{"/srv/repo", targets.URL{Kind: targets.KindLocal, Path: "/srv/repo"}},
		{"./repo", targets.URL{Kind: targets.KindLocal, Path: "./repo"}},
		{"repo", targets.URL{Kind: targets.KindLocal, Path: "repo"}},
		{"local:/srv/repo", targets.URL{Kind: targets.KindLocal, Path: "/srv/repo"}},
		{"local:rel/dir", targets.URL{Kind: targets.KindLocal, Path: "rel/dir"}},
		{"s3:http://127.0.0.1:7070/bucket", targets.URL{Kind: targets.KindS3Compat, Endpoint: "http://127.0.0.1:7070", Bucket: "bucket"}},
		{"s3:https://s3.example.com/my.bucket/a/b/", targets.URL{Kind: targets.KindS3Compat, Endpoint: "https://s3.example.com", Bucket: "my.bucket", Prefix: "a/b"}},
		{"s3:aws/bucket", targets.URL{Kind: targets.KindS3, Bucket: "bucket"}},
		{"s3:aws/bucket/pre/fix", targets.URL{Kind: targets.KindS3, Bucket: "bucket", Prefix: "pre/fix"}},
		{"s3://bucket/prefix", targets.URL{Kind: targets.KindS3, Bucket: "bucket", Prefix: "prefix"}},
		{"s3://bucket/p?endpoint=http://localhost:9000", targets.URL{Kind: targets.KindS3Compat, Endpoint: "http://localhost:9000", Bucket: "bucket", Prefix: "p"}},
	}
	for _, tc := range tests {
		got, err := targets.ParseURL(tc.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		// The canonical form parses to the same location.
		if again, err := targets.ParseURL(got.String()); err != nil || again != got {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseURLErrors(t *testing.T) {
	tests := []struct{ in, why string }{
		{"", "empty"},
		{"local:", "no directory"},
		{"s3:", "s3: must be followed by"},
		{"s3:ftp://host/bucket", "s3: must be followed by"},
		{"s3:http:///bucket", "no host"},
		{"s3:http://host", "no bucket"},
		{"s3:http://host/", "no bucket"},
		{"s3:http://user:pw@host/bucket", "credentials"},
		{"s3:http://host/bucket?x=1", "query"},
		{"s3:aws/", "no bucket"},
		{"s3:aws/Bucket", "bad bucket name"},
		{"s3:aws/b", "bad bucket name"},
		{"s3:aws/bucket/../x", "bad prefix"},
		{"s3:aws/bucket/a//b", "bad prefix"},
		{"s3://bucket?endpoint=ftp://x", "endpoint must be"},
		{"s3://bucket?region=eu", "unknown query parameter"},
		{"gs://bucket", "unsupported scheme gs:"},
		{"sftp:host:/dir", "unsupported scheme sftp:"},
	}
	for _, tc := range tests {
		_, err := targets.ParseURL(tc.in)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", tc.in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.why) || !strings.Contains(msg, "accepted forms") || !strings.Contains(msg, "s3:aws/BUCKET") {
			t.Errorf("ParseURL(%q) = %q, want it to say %q and list the accepted forms", tc.in, msg, tc.why)
		}
	}
}
