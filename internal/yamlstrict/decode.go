// Package yamlstrict decodes YAML into Go structs strictly, for files
// people write by hand: every problem is reported with its key path
// ("vms.web1.disks[0].path") and line, unknown keys get a "did you mean"
// hint, duplicate keys and wrong types are errors, and map keys are kept
// exactly as written.
//
// It works on yaml.Node rather than yaml.Decoder with KnownFields because
// that stops at the first problem and its messages have neither key paths
// nor suggestions; a hand-written file is fixed faster when all of its
// problems are listed at once, each at its line.
package yamlstrict

import (
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decoder is a strict YAML-to-struct decoder. It understands the yaml tags
// of the target structs (with ",inline" embedding), anchors/aliases and
// "<<" merge keys, and supports bool, int, string, slice, map, struct and
// pointer fields. Types whose YAML form is none of those implement
// NodeDecoder.
type Decoder struct {
	p *Problems
}

// NewDecoder returns a Decoder that records problems and key lines in p.
func NewDecoder(p *Problems) *Decoder {
	return &Decoder{p: p}
}

// Problems returns where d records problems, for NodeDecoders.
func (d *Decoder) Problems() *Problems { return d.p }

// NodeDecoder is implemented (on the pointer) by types that decode
// themselves, such as durations or values with several YAML forms. They
// report problems through d.Problems() and may call back into d.
type NodeDecoder interface {
	DecodeNode(d *Decoder, n *yaml.Node, key string)
}

var nodeDecoderType = reflect.TypeFor[NodeDecoder]()

// Decode decodes n, found at key path key, into v, which must be settable.
func (d *Decoder) Decode(n *yaml.Node, key string, v reflect.Value) {
	n = ResolveAlias(n)
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(NodeDecoder).DecodeNode(d, n, key)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if IsNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.Decode(n, key, v.Elem())
	case reflect.Struct:
		d.DecodeStruct(n, key, v)
	case reflect.Map:
		d.decodeMap(n, key, v)
	case reflect.Slice:
		d.DecodeSlice(n, key, v)
	case reflect.String:
		d.decodeString(n, key, v)
	case reflect.Int:
		d.decodeInt(n, key, v)
	case reflect.Bool:
		d.decodeBool(n, key, v)
	default:
		// A programming error in the target type, not a problem in the file.
		panic("yamlstrict: decoder does not support " + v.Type().String())
	}
}

type pair struct{ k, v *yaml.Node }

// pairs returns the key/value pairs of mapping n, with "<<" merges
// expanded (explicit keys win over merged ones). It reports non-mapping
// nodes, non-scalar keys and duplicate keys; a duplicate is dropped so
// that it cannot add follow-on problems.
func (d *Decoder) pairs(n *yaml.Node, key string) []pair {
	if n.Kind != yaml.MappingNode {
		d.p.AddAt(n.Line, key, "expected a mapping of keys (key: value), got %s", Describe(n))
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
			d.p.AddAt(k.Line, key, "keys must be plain words, got %s", Describe(k))
			continue
		}
		explicit = append(explicit, pair{k, v})
	}
	seen := map[string]int{}
	var unique []pair
	for _, pr := range explicit {
		if first, dup := seen[pr.k.Value]; dup {
			d.p.AddAt(pr.k.Line, ChildKey(key, pr.k.Value), "defined twice (first at line %d): keep one", first)
			continue
		}
		seen[pr.k.Value] = pr.k.Line
		unique = append(unique, pr)
	}
	out := make([]pair, 0, len(merged)+len(unique))
	for _, pr := range merged {
		if _, overridden := seen[pr.k.Value]; !overridden {
			out = append(out, pr)
		}
	}
	return append(out, unique...)
}

func (d *Decoder) mergePairs(v *yaml.Node, key string) []pair {
	v = ResolveAlias(v)
	if v.Kind == yaml.SequenceNode {
		var out []pair
		for _, item := range v.Content {
			out = append(out, d.pairs(ResolveAlias(item), key)...)
		}
		return out
	}
	return d.pairs(v, key)
}

// DecodeStruct decodes mapping n into struct v field by field, ignoring
// any NodeDecoder of v itself, so that a NodeDecoder can fall back to it.
func (d *Decoder) DecodeStruct(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	fields := yamlFields(v.Type())
	for _, pr := range d.pairs(n, key) {
		k := ChildKey(key, pr.k.Value)
		idx, ok := fields[pr.k.Value]
		if !ok {
			d.p.AddAt(pr.k.Line, k, "unknown key%s", unknownKeyHint(pr.k.Value, v.Type(), fields, ResolveAlias(pr.v)))
			continue
		}
		d.p.SetLine(k, pr.k.Line)
		d.Decode(pr.v, k, v.FieldByIndex(idx))
	}
}

// unknownKeyHint suggests the closest known key, preferring keys whose
// type fits the value given (so "repositorys: {...}" suggests
// repositories, not repository), else lists the known keys.
func unknownKeyHint(word string, t reflect.Type, fields map[string][]int, value *yaml.Node) string {
	var all, fitting []string
	for name, idx := range fields {
		all = append(all, name)
		if fits(t.FieldByIndex(idx).Type, value) {
			fitting = append(fitting, name)
		}
	}
	sort.Strings(all)
	sort.Strings(fitting)
	if s := DidYouMean(word, fitting); s != "" {
		return s
	}
	if s := DidYouMean(word, all); s != "" {
		return s
	}
	return ": known keys here are " + strings.Join(all, ", ")
}

// fits reports whether a node of n's kind could decode into type t.
func fits(t reflect.Type, n *yaml.Node) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(nodeDecoderType) {
		return true // it may accept any kind; no way to ask
	}
	switch n.Kind {
	case yaml.MappingNode:
		return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
	case yaml.SequenceNode:
		return t.Kind() == reflect.Slice
	default:
		return t.Kind() == reflect.String || t.Kind() == reflect.Int || t.Kind() == reflect.Bool
	}
}

func (d *Decoder) decodeMap(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	ps := d.pairs(n, key)
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(ps)))
	}
	for _, pr := range ps {
		k := ChildKey(key, pr.k.Value)
		d.p.SetLine(k, pr.k.Line)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.Decode(pr.v, k, elem)
		v.SetMapIndex(reflect.ValueOf(pr.k.Value), elem)
	}
}

// DecodeSlice decodes sequence n into slice v, ignoring any NodeDecoder of
// v itself, so that a NodeDecoder can fall back to it.
func (d *Decoder) DecodeSlice(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.p.AddAt(n.Line, key, "expected a list (lines starting with \"- \"), got %s", Describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		k := IndexKey(key, i)
		d.p.SetLine(k, item.Line)
		d.Decode(item, k, s.Index(i))
	}
	v.Set(s)
}

func (d *Decoder) decodeString(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.p.AddAt(n.Line, key, "expected a single value, got %s", Describe(n))
		return
	}
	v.SetString(n.Value)
}

func (d *Decoder) decodeInt(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	var i int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.p.AddAt(n.Line, key, "expected a whole number, got %s", Describe(n))
		return
	}
	v.SetInt(int64(i))
}

func (d *Decoder) decodeBool(n *yaml.Node, key string, v reflect.Value) {
	if IsNull(n) {
		return
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.p.AddAt(n.Line, key, "expected true or false, got %s", Describe(n))
		return
	}
	v.SetBool(b)
}

// yamlFields maps yaml key names to field index paths of struct type t,
// descending into embedded structs tagged ",inline".
func yamlFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.Anonymous && opts == "inline" {
			for sub, idx := range yamlFields(f.Type) {
				m[sub] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = []int{i}
	}
	return m
}

// ResolveAlias follows *alias nodes to the node they name.
func ResolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is an explicit or implied null ("key:" alone).
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// Describe names what a node is, for "expected X, got Y" messages.
func Describe(n *yaml.Node) string {
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
