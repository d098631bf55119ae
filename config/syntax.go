package config

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// yamlLinePattern matches the "yaml: line N: " prefix of parser errors.
var yamlLinePattern = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a YAML parser error into a FieldError with the file,
// the line and, for the usual mistakes, a hint.
func syntaxError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLinePattern.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return &FieldError{File: file, Line: line, Problem: "invalid YAML: " + msg + syntaxHint(data, line, msg), Err: err}
}

func syntaxHint(data []byte, line int, msg string) string {
	text := lineText(data, line)
	switch {
	case strings.Contains(msg, "cannot start any token") && bytes.ContainsRune(data, '\t'):
		return " (YAML does not allow tabs for indentation: use spaces)"
	case strings.Contains(msg, "alias") || strings.Contains(msg, "did not find expected alphabetic or numeric character"):
		if strings.Contains(text, ": *") || strings.Contains(text, "- *") {
			return " (a value starting with * must be quoted, e.g. schedule: \"*/15 * * * *\")"
		}
	case strings.Contains(msg, "mapping values are not allowed"):
		return " (check the indentation, and quote values that contain \": \")"
	}
	return ""
}

// lineText returns line n (1-based) of data, or "".
func lineText(data []byte, n int) string {
	if n < 1 {
		return ""
	}
	lines := bytes.Split(data, []byte("\n"))
	if n > len(lines) {
		return ""
	}
	return string(lines[n-1])
}
