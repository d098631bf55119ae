package targets

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Kind is the kind of storage a repository URL names.
type Kind string

const (
	// KindLocal is a directory.
	KindLocal Kind = "local"
	// KindS3 is Amazon S3, reached with aws-sdk-go-v2 and the AWS
	// environment's region and credentials.
	KindS3 Kind = "s3"
	// KindS3Compat is an S3-compatible server at an explicit endpoint,
	// reached with minio-go.
	KindS3Compat Kind = "s3compat"
)

// URL is a parsed repository location. Parsing lives here, apart from the
// code that opens a target (package targets/open), so that configuration
// can be validated without linking the S3 SDKs.
type URL struct {
	Kind Kind
	// Path is the directory of a local target.
	Path string
	// Endpoint is scheme://host[:port] of an S3-compatible server.
	Endpoint string
	// Bucket and Prefix locate the objects of an S3 target; Prefix has no
	// leading or trailing slash and may be empty.
	Bucket string
	Prefix string
}

// URLForms lists the accepted forms, for help texts and error messages.
const URLForms = `accepted forms:
  /path/to/dir, ./dir or local:PATH               a local directory
  s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]         an S3-compatible server
  s3:aws/BUCKET[/PREFIX]                          Amazon S3 (region and credentials from the AWS environment)
  s3://BUCKET[/PREFIX][?endpoint=http[s]://HOST[:PORT]]  the same two, URL style`

var (
	schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// ParseURL parses a repository location. A string without a scheme is a
// local path.
func ParseURL(s string) (URL, error) {
	u, why := parseURL(s)
	if why != "" {
		return URL{}, fmt.Errorf("invalid repository URL %q: %s\n%s", s, why, URLForms)
	}
	return u, nil
}

func parseURL(s string) (URL, string) {
	switch {
	case s == "":
		return URL{}, "empty"
	case strings.HasPrefix(s, "local:"):
		if p := strings.TrimPrefix(s, "local:"); p != "" {
			return URL{Kind: KindLocal, Path: p}, ""
		}
		return URL{}, "no directory after local:"
	case strings.HasPrefix(s, "s3://"):
		return parseS3Style(s)
	case strings.HasPrefix(s, "s3:aws/"):
		return bucketPath(URL{Kind: KindS3}, strings.TrimPrefix(s, "s3:aws/"))
	case strings.HasPrefix(s, "s3:http://"), strings.HasPrefix(s, "s3:https://"):
		return parseEndpoint(strings.TrimPrefix(s, "s3:"))
	case strings.HasPrefix(s, "s3:"):
		return URL{}, "s3: must be followed by http://, https:// or aws/"
	case schemeRE.MatchString(s):
		return URL{}, "unsupported scheme " + schemeRE.FindString(s)
	}
	return URL{Kind: KindLocal, Path: s}, ""
}

// parseEndpoint parses http[s]://host[:port]/bucket[/prefix].
func parseEndpoint(s string) (URL, string) {
	pu, err := url.Parse(s)
	if err != nil {
		return URL{}, err.Error()
	}
	if pu.Host == "" {
		return URL{}, "no host in the endpoint"
	}
	if pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" {
		return URL{}, "credentials, query or fragment in the endpoint are not supported (pass keys in the environment)"
	}
	return bucketPath(URL{Kind: KindS3Compat, Endpoint: pu.Scheme + "://" + pu.Host}, strings.TrimPrefix(pu.Path, "/"))
}

// parseS3Style parses s3://bucket[/prefix][?endpoint=...].
func parseS3Style(s string) (URL, string) {
	pu, err := url.Parse(s)
	if err != nil {
		return URL{}, err.Error()
	}
	u := URL{Kind: KindS3}
	q := pu.Query()
	if ep := q.Get("endpoint"); ep != "" {
		e, err := url.Parse(ep)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || (e.Path != "" && e.Path != "/") {
			return URL{}, "endpoint must be http[s]://HOST[:PORT]"
		}
		u = URL{Kind: KindS3Compat, Endpoint: e.Scheme + "://" + e.Host}
		q.Del("endpoint")
	}
	if len(q) > 0 {
		return URL{}, "unknown query parameter (only endpoint is accepted)"
	}
	return bucketPath(u, pu.Host+pu.Path)
}

// bucketPath fills Bucket and Prefix from "bucket[/prefix]".
func bucketPath(u URL, p string) (URL, string) {
	bucket, prefix, _ := strings.Cut(p, "/")
	if bucket == "" {
		return URL{}, "no bucket"
	}
	if !bucketRE.MatchString(bucket) || strings.Contains(bucket, "..") {
		return URL{}, fmt.Sprintf("bad bucket name %q (3-63 lowercase letters, digits, dots and hyphens)", bucket)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return URL{}, "bad prefix: " + err.Error()
		}
	}
	u.Bucket, u.Prefix = bucket, prefix
	return u, ""
}

// String gives the canonical form of u.
func (u URL) String() string {
	var s string
	switch u.Kind {
	case KindLocal:
		return "local:" + u.Path
	case KindS3:
		s = "s3:aws/" + u.Bucket
	case KindS3Compat:
		s = "s3:" + u.Endpoint + "/" + u.Bucket
	default:
		return "invalid:" + string(u.Kind)
	}
	if u.Prefix != "" {
		s += "/" + u.Prefix
	}
	return s
}
