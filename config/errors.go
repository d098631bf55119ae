package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrNoRepository is returned by ResolveRepository when no repository was
// named and the configuration has no default.
var ErrNoRepository = errors.New("no repository given: pass -r/--repo, set DRCTL_REPOSITORY, or set repository: in drctl.yaml")

// FieldError is one problem with one setting. It names where the setting
// is (file and line, or "environment"), the key, what is wrong and what to do.
type FieldError struct {
	File    string // config file as given, or "environment"
	Line    int    // 1-based line in File; 0 if unknown
	Key     string // e.g. "vms.web1.disks[0].path" or "DRCTL_LOG_LEVEL"
	Problem string // what is wrong, then how to fix it
	Err     error  // underlying error, if any
}

// Unwrap returns the underlying error, so errors.Is(err, fs.ErrNotExist)
// works for an unreadable password file.
func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "config"
	}
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Problem
	}
	return loc + ": " + e.Key + ": " + e.Problem
}

// maxReported caps how many problems one Load reports, so that feeding
// drctl the wrong file gives a readable answer.
const maxReported = 20

// problems collects FieldErrors for one file.
type problems struct {
	file  string
	lines map[string]int // key path -> line of the key in the file
	errs  []*FieldError
}

func newProblems(file string) *problems {
	return &problems{file: file, lines: map[string]int{}}
}

// addf records a problem with key, placed at the line of key or of its
// nearest parent that appears in the file.
func (p *problems) addf(key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{
		File:    p.file,
		Line:    p.lineOf(key),
		Key:     key,
		Problem: fmt.Sprintf(format, args...),
	})
}

// addAt records a problem at an explicit line.
func (p *problems) addAt(line int, key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (p *problems) lineOf(key string) int {
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := p.lines[k]; ok {
			return l
		}
	}
	return 0
}

// err returns all problems sorted by line, joined, or nil.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	errs := make([]error, 0, len(p.errs))
	for i, e := range p.errs {
		if i == maxReported {
			errs = append(errs, fmt.Errorf("%s: and %d more problems", p.file, len(p.errs)-maxReported))
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// parentKey returns "vms.web1.disks[0]" for "vms.web1.disks[0].path",
// "vms.web1.disks" for "vms.web1.disks[0]", and "" for "vms".
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
