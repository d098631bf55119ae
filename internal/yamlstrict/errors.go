package yamlstrict

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with one setting. It names where the setting
// is (file and line), the key path, what is wrong and what to do.
type FieldError struct {
	File    string // file as given, or a stand-in such as "environment"
	Line    int    // 1-based line in File; 0 if unknown
	Key     string // e.g. "vms.web1.disks[0].path"
	Problem string // what is wrong, then how to fix it
	Err     error  // underlying error, if any
}

// Unwrap returns the underlying error, so errors.Is(err, fs.ErrNotExist)
// works for a file the setting names but that cannot be read.
func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	msg := e.Problem
	if e.Key != "" {
		msg = e.Key + ": " + msg
	}
	// Callers name a stand-in ("config", "plan") when there is no file;
	// a hand-built error without one should not start with ": ".
	if loc == "" {
		return msg
	}
	return loc + ": " + msg
}

// MaxReported caps how many problems one file reports, so that feeding
// drctl the wrong file gives a readable answer.
const MaxReported = 20

// Problems collects FieldErrors for one file, and remembers the line of
// every key so that checks made after decoding can still point at it.
type Problems struct {
	file  string
	lines map[string]int // key path -> line of the key in the file
	errs  []*FieldError
}

// NewProblems returns an empty collector for file, the name errors show.
func NewProblems(file string) *Problems {
	return &Problems{file: file, lines: map[string]int{}}
}

// File returns the name errors show for the file.
func (p *Problems) File() string { return p.file }

// Lines returns the key path to line table. It is shared, not copied, so
// that a caller can keep it to place errors found after decoding.
func (p *Problems) Lines() map[string]int { return p.lines }

// SetLine records that key is written on line.
func (p *Problems) SetLine(key string, line int) { p.lines[key] = line }

// Addf records a problem with key, placed at the line of key or of its
// nearest parent that appears in the file.
func (p *Problems) Addf(key, format string, args ...any) {
	p.errs = append(p.errs, p.Errorf(key, format, args...))
}

// AddAt records a problem at an explicit line.
func (p *Problems) AddAt(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Key: key, Problem: fmt.Sprintf(format, args...)})
}

// Errorf returns, without recording it, the problem Addf would record, for
// callers that must add an underlying error or return it on its own.
func (p *Problems) Errorf(key, format string, args ...any) *FieldError {
	return &FieldError{File: p.file, Line: p.LineOf(key), Key: key, Problem: fmt.Sprintf(format, args...)}
}

// LineOf returns the line of key or of its nearest parent in the file.
func (p *Problems) LineOf(key string) int { return LineOf(p.lines, key) }

// LineOf returns the line of key or of its nearest parent in lines, a
// table kept from Problems.Lines, or 0.
func LineOf(lines map[string]int, key string) int {
	for k := key; k != ""; k = ParentKey(k) {
		if l, ok := lines[k]; ok {
			return l
		}
	}
	return 0
}

// Has reports whether key was written in the file (even with a null
// value), which is how "exactly one of" rules tell set from unset.
func (p *Problems) Has(key string) bool {
	_, ok := p.lines[key]
	return ok
}

// HasUnder reports whether a problem was already recorded for key or a key
// below it, so that a typo such as "bridg:" is not also reported as a
// missing setting.
func (p *Problems) HasUnder(key string) bool {
	return slices.ContainsFunc(p.errs, func(e *FieldError) bool {
		return e.Key == key || strings.HasPrefix(e.Key, key+".") || strings.HasPrefix(e.Key, key+"[")
	})
}

// Err returns up to MaxReported problems sorted by line, joined, or nil.
func (p *Problems) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	errs := make([]error, 0, min(len(p.errs), MaxReported+1))
	for i, e := range p.errs {
		if i == MaxReported {
			errs = append(errs, fmt.Errorf("%s: and %d more problems", p.file, len(p.errs)-MaxReported))
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// ParentKey returns "vms.web1.disks[0]" for "vms.web1.disks[0].path",
// "vms.web1.disks" for "vms.web1.disks[0]", and "" for "vms".
func ParentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// ChildKey joins a parent key path and a map key or field name.
func ChildKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// IndexKey returns the key path of item i of the list at parent.
func IndexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// Suggest returns the candidate closest to word if it is close enough to
// be a likely typo, else "".
func Suggest(word string, candidates []string) string {
	best, bestDist := "", 3
	lw := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(lw, strings.ToLower(c))
		if d < bestDist && d < len(c) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// DidYouMean formats " (did you mean X?)" or "".
func DidYouMean(word string, candidates []string) string {
	if s := Suggest(word, candidates); s != "" {
		return " (did you mean " + s + "?)"
	}
	return ""
}

// SortedKeys returns the keys of m in order, for stable messages.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
