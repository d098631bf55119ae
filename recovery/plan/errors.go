package plan

import (
	"strings"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// FieldError is one problem with one setting of a plan. It names where the
// setting is (file and line), the key path, what is wrong and what to do.
// It is an alias so that errors.As with *config.FieldError, which callers
// use to recognise mistakes in files people write, matches plans too.
type FieldError = yamlstrict.FieldError

// newProblems starts collecting problems of the plan in file; a plan parsed
// from memory is called "plan" in errors.
func newProblems(file string) *yamlstrict.Problems {
	if file == "" {
		file = "plan"
	}
	return yamlstrict.NewProblems(file)
}

// planSyntax words YAML syntax errors for plan files; its examples are
// the health checks whose values most often need quotes.
var planSyntax = yamlstrict.Syntax{
	MultiDoc: "more than one YAML document (---): put the whole plan in one document, and each plan in its own file",
	Hint:     syntaxHint,
}

func syntaxHint(_ []byte, _ int, msg string) string {
	switch {
	case strings.HasPrefix(msg, "did not find expected ',' or"):
		return " (check the brackets, and quote values that contain \": \" or \", \" inside [ ] or { }, e.g. {serial: \"login: \"})"
	case strings.Contains(msg, "mapping values are not allowed"):
		return " (check the indentation, and quote values that contain \": \", e.g. serial: \"login: \")"
	}
	return ""
}

// maxReported is how many problems one Parse reports, as its doc says.
const maxReported = yamlstrict.MaxReported

// parentKey keeps the name this package's tests use for the shared helper.
func parentKey(key string) string { return yamlstrict.ParentKey(key) }
