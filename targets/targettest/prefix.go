package targettest

import (
	"slices"
	"testing"

	"github.com/drctl/drctl/targets"
)

// RunPrefix checks that targets on the same bucket under different
// prefixes (and none) do not see each other's keys, and that a prefixed
// key is stored at prefix/key. newTarget opens bucket under prefix.
func RunPrefix(t *testing.T, newTarget func(t *testing.T, bucket, prefix string) targets.Target, bucket string) {
	root := newTarget(t, bucket, "")
	a := newTarget(t, bucket, "repo/a")
	b := newTarget(t, bucket, "/repo/b/") // slashes are trimmed
	put(t, a, "config", []byte("a"))
	put(t, b, "config", []byte("b"))
	put(t, root, "repo/az", []byte("outside"))
	mustHold(t, a, "config", []byte("a"))
	mustHold(t, b, "config", []byte("b"))
	mustHold(t, root, "repo/a/config", []byte("a"))
	var keys []string
	for _, oi := range listAll(t, a, "") {
		keys = append(keys, oi.Key)
	}
	if !slices.Equal(keys, []string{"config"}) {
		t.Fatalf("List under repo/a = %q, want [config]", keys)
	}
	if err := b.Delete(t.Context(), "config"); err != nil {
		t.Fatal(err)
	}
	mustHold(t, a, "config", []byte("a"))
}
