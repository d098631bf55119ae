package targets

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ValidateKey checks that key is portable across every target: a
// slash-separated relative path of non-empty segments, none of which starts
// with a dot. S3 would accept far more, but a key that only works on S3 would
// break a repository copied to a directory, so every implementation applies
// the same rule. Dot-names are reserved for a target's own bookkeeping (the
// local target's temporary and lock files).
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("invalid key %q: empty", key)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("invalid key %q: not valid UTF-8", key)
	}
	if len(key) > 900 {
		return fmt.Errorf("invalid key %q: longer than 900 bytes", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if why := badSegment(seg); why != "" {
			return fmt.Errorf("invalid key %q: %s", key, why)
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix. A prefix may end in the middle of a
// segment ("data/a") or with a slash ("data/"); it may be empty.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !utf8.ValidString(prefix) {
		return fmt.Errorf("invalid prefix %q: not valid UTF-8", prefix)
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		if i == len(segs)-1 && seg == "" {
			break // trailing slash
		}
		if why := badSegment(seg); why != "" {
			return fmt.Errorf("invalid prefix %q: %s", prefix, why)
		}
	}
	return nil
}

// badSegment says what is wrong with one path segment, or "" if nothing.
func badSegment(seg string) string {
	switch {
	case seg == "":
		return "empty path segment (leading, trailing or double slash)"
	case seg[0] == '.':
		return "segment " + seg + " starts with a dot"
	}
	for _, r := range seg {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Sprintf("control character or backslash %q", r)
		}
	}
	return ""
}
