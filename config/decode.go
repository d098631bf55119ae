package config

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder is a strict YAML-to-struct decoder. Unlike yaml.Decoder with
// KnownFields, it reports every problem with its full key path
// ("vms.web1.disks[0].path") and line, suggests the closest key for
// unknown ones, rejects duplicate keys, and keeps map keys (VM names)
// exactly as written. It understands the yaml tags of the target structs,
// anchors/aliases and "<<" merge keys.
type decoder struct {
	p *problems
}

func (d *decoder) decode(n *yaml.Node, key string, v reflect.Value) {
	n = resolveAlias(n)
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, key, v.Elem())
	case reflect.Struct:
		d.decodeStruct(n, key, v)
	case reflect.Map:
		d.decodeMap(n, key, v)
	case reflect.Slice:
		d.decodeSlice(n, key, v)
	case reflect.String:
		d.decodeString(n, key, v)
	case reflect.Int:
		d.decodeInt(n, key, v)
	case reflect.Bool:
		d.decodeBool(n, key, v)
	default:
		panic("config: decoder does not support " + v.Type().String())
	}
}

type pair struct{ k, v *yaml.Node }

// pairs returns the key/value pairs of mapping n, with "<<" merges
// expanded (explicit keys win over merged ones). It reports non-mapping
// nodes, non-scalar keys and duplicate keys.
func (d *decoder) pairs(n *yaml.Node, key string) []pair {
	if n.Kind != yaml.MappingNode {
		d.p.addAt(n.Line, key, "expected a mapping of keys (key: value), got %s", describe(n))
		return nil
	}
	var merged, explicit []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.mergePairs(v, key)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.p.addAt(k.Line, key, "keys must be plain words, got %s", describe(k))
			continue
		}
		explicit = append(explicit, pair{k, v})
	}
	seen := map[string]int{}
	for _, pr := range explicit {
		if first, dup := seen[pr.k.Value]; dup {
			d.p.addAt(pr.k.Line, childKey(key, pr.k.Value), "defined twice (first at line %d): keep one", first)
			continue
		}
		seen[pr.k.Value] = pr.k.Line
	}
	out := make([]pair, 0, len(merged)+len(explicit))
	for _, pr := range merged {
		if _, overridden := seen[pr.k.Value]; !overridden {
			out = append(out, pr)
		}
	}
	return append(out, explicit...)
}

func (d *decoder) mergePairs(v *yaml.Node, key string) []pair {
	v = resolveAlias(v)
	if v.Kind == yaml.SequenceNode {
		var out []pair
		for _, item := range v.Content {
			out = append(out, d.pairs(resolveAlias(item), key)...)
		}
		return out
	}
	return d.pairs(v, key)
}

func (d *decoder) decodeStruct(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	fields := yamlFields(v.Type())
	for _, pr := range d.pairs(n, key) {
		k := childKey(key, pr.k.Value)
		idx, ok := fields[pr.k.Value]
		if !ok {
			d.p.addAt(pr.k.Line, k, "unknown key%s", unknownKeyHint(pr.k.Value, v.Type(), fields, resolveAlias(pr.v)))
			continue
		}
		d.p.lines[k] = pr.k.Line
		d.decode(pr.v, k, v.Field(idx))
	}
}

// unknownKeyHint suggests the closest known key, preferring keys whose
// type fits the value given (so "repositorys: {...}" suggests
// repositories, not repository), else lists the known keys.
func unknownKeyHint(word string, t reflect.Type, fields map[string]int, value *yaml.Node) string {
	var all, fitting []string
	for name, idx := range fields {
		all = append(all, name)
		if fits(t.Field(idx).Type, value) {
			fitting = append(fitting, name)
		}
	}
	sort.Strings(all)
	sort.Strings(fitting)
	if s := didYouMean(word, fitting); s != "" {
		return s
	}
	if s := didYouMean(word, all); s != "" {
		return s
	}
	return ": known keys here are " + strings.Join(all, ", ")
}

// fits reports whether a node of n's kind could decode into type t.
func fits(t reflect.Type, n *yaml.Node) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.MappingNode:
		return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
	case yaml.SequenceNode:
		return t.Kind() == reflect.Slice
	default:
		return t.Kind() == reflect.String || t.Kind() == reflect.Int
	}
}

func (d *decoder) decodeMap(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	ps := d.pairs(n, key)
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(ps)))
	}
	for _, pr := range ps {
		k := childKey(key, pr.k.Value)
		d.p.lines[k] = pr.k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(pr.v, k, elem)
		v.SetMapIndex(reflect.ValueOf(pr.k.Value), elem)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.p.addAt(n.Line, key, "expected a list (lines starting with \"- \"), got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		k := key + "[" + strconv.Itoa(i) + "]"
		d.p.lines[k] = item.Line
		d.decode(item, k, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) decodeString(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.p.addAt(n.Line, key, "expected a single value, got %s", describe(n))
		return
	}
	v.SetString(n.Value)
}

func (d *decoder) decodeInt(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	var i int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.p.addAt(n.Line, key, "expected a whole number, got %s", describe(n))
		return
	}
	v.SetInt(int64(i))
}

func (d *decoder) decodeBool(n *yaml.Node, key string, v reflect.Value) {
	if isNull(n) {
		return
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.p.addAt(n.Line, key, "expected true or false, got %s", describe(n))
		return
	}
	v.SetBool(b)
}

// yamlFields maps yaml key names to field indexes of struct type t.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = i
	}
	return m
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	default:
		return "something else"
	}
}
