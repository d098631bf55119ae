package plan

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with one setting of a plan. It names where the
// setting is (file and line), the key path, what is wrong and what to do.
type FieldError struct {
	File    string // plan file as given; "plan" when parsed from memory
	Line    int    // 1-based line in File; 0 if unknown
	Key     string // e.g. "groups[0].vms[1].health[0].serial"
	Problem string // what is wrong, then how to fix it
	Err     error  // underlying error, if any
}

// Unwrap returns the underlying error, so errors.Is(err, fs.ErrNotExist)
// works for a missing kernel file.
func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "plan"
	}
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Problem
	}
	return loc + ": " + e.Key + ": " + e.Problem
}

// maxReported caps how many problems one Parse reports, so that feeding
// drctl the wrong file gives a readable answer.
const maxReported = 20

// problems collects FieldErrors for one file, and remembers the line of
// every key so that checks made after decoding can still point at it.
type problems struct {
	file  string
	lines map[string]int // key path -> line of the key in the file
	errs  []*FieldError
}

func newProblems(file string) *problems {
	if file == "" {
		file = "plan"
	}
	return &problems{file: file, lines: map[string]int{}}
}

// addf records a problem with key, placed at the line of key or of its
// nearest parent that appears in the file.
func (p *problems) addf(key, format string, args ...any) {
	p.errs = append(p.errs, p.errorf(key, format, args...))
}

// addAt records a problem at an explicit line.
func (p *problems) addAt(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (p *problems) errorf(key, format string, args ...any) *FieldError {
	return &FieldError{File: p.file, Line: p.lineOf(key), Key: key, Problem: fmt.Sprintf(format, args...)}
}

func (p *problems) lineOf(key string) int {
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := p.lines[k]; ok {
			return l
		}
	}
	return 0
}

// has reports whether key was written in the file (even with a null
// value), which is how "exactly one of" rules tell set from unset.
func (p *problems) has(key string) bool {
	_, ok := p.lines[key]
	return ok
}

// hasUnder reports whether a problem was already recorded for key or a key
// below it, so that a typo such as "bridg:" is not also reported as "no
// network kind".
func (p *problems) hasUnder(key string) bool {
	return slices.ContainsFunc(p.errs, func(e *FieldError) bool {
		return e.Key == key || strings.HasPrefix(e.Key, key+".") || strings.HasPrefix(e.Key, key+"[")
	})
}

// err returns all problems sorted by line, joined, or nil.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	errs := make([]error, 0, min(len(p.errs), maxReported+1))
	for i, e := range p.errs {
		if i == maxReported {
			errs = append(errs, fmt.Errorf("%s: and %d more problems", p.file, len(p.errs)-maxReported))
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// parentKey returns "groups[0].vms[1]" for "groups[0].vms[1].vm",
// "groups[0].vms" for "groups[0].vms[1]", and "" for "groups".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// childKey joins a parent key path and a map key or field name.
func childKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// suggest returns the candidate closest to word if it is close enough to
// be a likely typo, else "".
func suggest(word string, candidates []string) string {
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

// didYouMean formats " (did you mean X?)" or "".
func didYouMean(word string, candidates []string) string {
	if s := suggest(word, candidates); s != "" {
		return " (did you mean " + s + "?)"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
