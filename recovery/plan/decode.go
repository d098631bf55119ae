package plan

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder is a strict YAML-to-struct decoder in the style of the config
// package's: every problem is reported with its key path and line, unknown
// keys get a suggestion, duplicate keys are rejected, and map keys (VM and
// network names) are kept exactly as written. Types whose YAML form is not
// a plain struct, list or scalar implement nodeDecoder.
type decoder struct {
	p *problems
}

// nodeDecoder is implemented (on the pointer) by file types that decode
// themselves: durations, recovery points, argv lists.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, key string)
}

var nodeDecoderType = reflect.TypeFor[nodeDecoder]()

func (d *decoder) decode(n *yaml.Node, key string, v reflect.Value) {
	n = resolveAlias(n)
	if v.CanAddr() && v.Addr().Type().Implements(nodeDecoderType) {
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n, key)
		return
	}
	switch v.Kind() {
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
		panic("plan: decoder does not support " + v.Type().String())
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
	var unique []pair
	for _, pr := range explicit {
		if first, dup := seen[pr.k.Value]; dup {
			d.p.addAt(pr.k.Line, childKey(key, pr.k.Value), "defined twice (first at line %d): keep one", first)
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
		d.decode(pr.v, k, v.FieldByIndex(idx))
	}
}

// unknownKeyHint suggests the closest known key, preferring keys whose
// type fits the value given, else lists the known keys.
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
	if reflect.PointerTo(t).Implements(nodeDecoderType) {
		return true
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
		k := indexKey(key, i)
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

// parseYAML returns the root node of the single document in data, nil for
// an empty document, or an error with file and line.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(file, data, err)
		}
		return nil, &FieldError{File: file, Line: extra.Line, Problem: "more than one YAML document (---): put the whole plan in one document, and each plan in its own file"}
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
func syntaxError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLinePattern.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if isParserError(msg) {
			line++
		}
	}
	return &FieldError{File: file, Line: line, Problem: "invalid YAML: " + msg + syntaxHint(data, msg), Err: err}
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

func syntaxHint(data []byte, msg string) string {
	switch {
	case strings.Contains(msg, "cannot start any token") && bytes.ContainsRune(data, '\t'):
		return " (YAML does not allow tabs for indentation: use spaces)"
	case strings.HasPrefix(msg, "did not find expected ',' or"):
		return " (check the brackets, and quote values that contain \": \" or \", \" inside [ ] or { }, e.g. {serial: \"login: \"})"
	case strings.HasPrefix(msg, "did not find expected key"), strings.HasPrefix(msg, "did not find expected '-'"):
		// yaml.v3 reports where the enclosing block starts, not the bad line.
		return " (in the block that starts on this line: check that its keys or \"- \" items line up, and quote values that contain \": \")"
	case strings.Contains(msg, "mapping values are not allowed"):
		return " (check the indentation, and quote values that contain \": \", e.g. serial: \"login: \")"
	}
	return ""
}
