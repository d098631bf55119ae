package yamlstrict

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Syntax holds what differs between kinds of file when reporting YAML
// syntax errors: the wording suits the file, and examples name its keys.
type Syntax struct {
	// MultiDoc is the problem reported for a second document (---).
	MultiDoc string
	// Hint returns advice for the parser message msg about line (1-based,
	// 0 if unknown) of data, or "" to fall back to the common hints.
	Hint func(data []byte, line int, msg string) string
}

// Parse returns the root node of the single document in data, nil for an
// empty document, or a *FieldError with file and line.
func (s Syntax) Parse(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, s.syntaxError(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, s.syntaxError(file, data, err)
		}
		return nil, &FieldError{File: file, Line: extra.Line, Problem: s.MultiDoc}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlLinePattern matches the "yaml: line N: " prefix of parser errors.
var yamlLinePattern = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parser error into a FieldError with the file,
// the line and, for the usual mistakes, a hint.
func (s Syntax) syntaxError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLinePattern.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if isParserError(msg) {
			line++
		}
	}
	return &FieldError{File: file, Line: line, Problem: "invalid YAML: " + msg + s.hint(data, line, msg), Err: err}
}

// isParserError reports whether msg comes from the YAML parser rather than
// the scanner: yaml.v3 numbers the lines of parser errors from 0 (it
// corrects only scanner errors), so they need one added.
func isParserError(msg string) bool {
	for _, m := range []string{
		"did not find expected <", "did not find expected node content", "did not find expected '-' indicator",
		"did not find expected key", "did not find expected ',' or", "found undefined tag handle",
		"found duplicate %", "found incompatible YAML document",
	} {
		if strings.HasPrefix(msg, m) {
			return true
		}
	}
	return false
}

func (s Syntax) hint(data []byte, line int, msg string) string {
	if s.Hint != nil {
		if h := s.Hint(data, line, msg); h != "" {
			return h
		}
	}
	switch {
	case strings.Contains(msg, "cannot start any token") && bytes.ContainsRune(data, '\t'):
		return " (YAML does not allow tabs for indentation: use spaces)"
	case strings.HasPrefix(msg, "did not find expected key"), strings.HasPrefix(msg, "did not find expected '-'"):
		// yaml.v3 reports where the enclosing block starts, not the bad line.
		return " (in the block that starts on this line: check that its keys or \"- \" items line up, and quote values that contain \": \")"
	}
	return ""
}

// LineText returns line n (1-based) of data, or "", for hints that look at
// what was written.
func LineText(data []byte, n int) string {
	if n < 1 {
		return ""
	}
	lines := bytes.Split(data, []byte("\n"))
	if n > len(lines) {
		return ""
	}
	return string(lines[n-1])
}
