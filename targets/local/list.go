package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/drctl/drctl/targets"
)

// List walks the tree in lexical order of the full keys, as S3 lists. A
// plain sorted directory walk is not that order: "a-b" sorts before "a/c"
// ('-' < '/') although the directory "a" sorts before the file "a-b". So
// within a directory, subdirectories are ordered by their name plus "/",
// which makes the walk agree with a sort of the whole keys. Subtrees that
// cannot hold a key with the prefix are not read.
func (t *Target) List(ctx context.Context, prefix string, fn func(targets.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %q in %s: %w", targets.OpList, prefix, t.dir, err)
	}
	if err := targets.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("%s in %s: %w", targets.OpList, t.dir, err)
	}
	if _, err := os.Stat(t.dir); err != nil {
		return t.fail(targets.OpList, prefix, err)
	}
	return t.walk(ctx, "", prefix, fn)
}

type entry struct {
	key string // relative key; directories end in "/"
	de  fs.DirEntry
}

func (t *Target) walk(ctx context.Context, rel, prefix string, fn func(targets.ObjectInfo) error) error {
	des, err := os.ReadDir(filepath.Join(t.dir, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) && rel != "" {
		return nil // removed while we listed
	}
	if err != nil {
		return t.fail(targets.OpList, prefix, err)
	}
	ents := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			continue // temporary and lock files
		}
		key := rel + name
		if de.IsDir() {
			key += "/"
		} else if !de.Type().IsRegular() {
			continue
		}
		ents = append(ents, entry{key, de})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].key < ents[j].key })
	for _, e := range ents {
		if e.de.IsDir() {
			if strings.HasPrefix(e.key, prefix) || strings.HasPrefix(prefix, e.key) {
				if err := t.walk(ctx, e.key, prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(e.key, prefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s %q in %s: %w", targets.OpList, prefix, t.dir, err)
		}
		fi, err := e.de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we listed
		}
		if err != nil {
			return t.fail(targets.OpList, prefix, err)
		}
		if err := fn(objectInfo(e.key, fi)); err != nil {
			return err
		}
	}
	return nil
}
