package config

import (
	"errors"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// ErrNoRepository is returned by ResolveRepository when no repository was
// named and the configuration has no default.
var ErrNoRepository = errors.New("no repository given: pass -r/--repo, set DRCTL_REPOSITORY, or set repository: in drctl.yaml")

// FieldError is one problem with one setting. It names where the setting
// is (file and line, or "environment"), the key, what is wrong and what to
// do. It is an alias so that errors.As with *config.FieldError also
// matches problems in recovery plans, which share the decoder.
type FieldError = yamlstrict.FieldError

// suggest and parentKey keep the names this package's tests and callers
// have always used for the shared helpers.
func suggest(word string, candidates []string) string { return yamlstrict.Suggest(word, candidates) }

func parentKey(key string) string { return yamlstrict.ParentKey(key) }
