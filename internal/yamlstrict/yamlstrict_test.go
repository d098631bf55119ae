package yamlstrict

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type disk struct {
	Path string `yaml:"path"`
	Name string `yaml:"name"`
}

type keep struct {
	Last  int `yaml:"last"`
	Daily int `yaml:"daily"`
}

type common struct {
	Name string `yaml:"name"`
}

// upper is a NodeDecoder: it stores its scalar in upper case.
type upper string

func (u *upper) DecodeNode(d *Decoder, n *yaml.Node, key string) {
	if n.Kind != yaml.ScalarNode {
		d.Problems().AddAt(n.Line, key, "expected a word, got %s", Describe(n))
		return
	}
	*u = upper(strings.ToUpper(n.Value))
}

type target struct {
	Repository   string            `yaml:"repository"`
	Repositories map[string]string `yaml:"repositories"`
	Disks        []disk            `yaml:"disks"`
	Keep         *keep             `yaml:"keep"`
	Paused       bool              `yaml:"paused"`
	CPUs         int               `yaml:"cpus"`
	Mode         upper             `yaml:"mode"`
	Ignored      string            `yaml:"-"`
	common       `yaml:",inline"`
}

// decode parses y and decodes it into a target, returning the joined
// problems and the collector.
func decode(t *testing.T, y string) (target, *Problems, error) {
	t.Helper()
	root, err := Syntax{MultiDoc: "two docs"}.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var v target
	p := NewProblems("f.yaml")
	if root != nil {
		NewDecoder(p).Decode(root, "", reflect.ValueOf(&v).Elem())
	}
	return v, p, p.Err()
}

func TestDecode(t *testing.T) {
	y := `repository: main
repositories: {Main: /srv/a, "db.prod": /srv/b}
disks:
  - path: /a
  - {path: /b, name: data}
keep:
  <<: {last: 3}
  daily: 7
paused: true
cpus: 4
mode: fast
name: web1
`
	v, p, err := decode(t, y)
	if err != nil {
		t.Fatal(err)
	}
	want := target{
		Repository:   "main",
		Repositories: map[string]string{"Main": "/srv/a", "db.prod": "/srv/b"},
		Disks:        []disk{{Path: "/a"}, {Path: "/b", Name: "data"}},
		Keep:         &keep{Last: 3, Daily: 7},
		Paused:       true,
		CPUs:         4,
		Mode:         "FAST",
		common:       common{Name: "web1"},
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got  %+v\nwant %+v", v, want)
	}
	for key, line := range map[string]int{"repository": 1, "repositories.db.prod": 2, "disks[1]": 5, "disks[1].name": 5, "keep.daily": 8, "name": 12} {
		if got := p.LineOf(key); got != line {
			t.Errorf("LineOf(%s) = %d, want %d", key, got, line)
		}
	}
	if !p.Has("keep.last") || p.Has("keep.weekly") {
		t.Errorf("Has(keep.last) = %v, Has(keep.weekly) = %v: merged keys count as written", p.Has("keep.last"), p.Has("keep.weekly"))
	}
}

func TestDecodeAliasesAndMergeOverride(t *testing.T) {
	type file struct {
		Keeps map[string]keep `yaml:"keeps"`
	}
	y := "keeps:\n  std: &std {last: 1, daily: 2}\n  copy: *std\n  more:\n    <<: [*std, {last: 9}]\n    daily: 5\n"
	root, err := Syntax{}.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var v file
	p := NewProblems("f.yaml")
	NewDecoder(p).Decode(root, "", reflect.ValueOf(&v).Elem())
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	// Merged mappings apply in order, and explicit keys win over all.
	want := map[string]keep{"std": {1, 2}, "copy": {1, 2}, "more": {Last: 9, Daily: 5}}
	if !reflect.DeepEqual(v.Keeps, want) {
		t.Errorf("Keeps = %+v, want %+v", v.Keeps, want)
	}
}

func TestDecodeNullPointer(t *testing.T) {
	v, _, err := decode(t, "keep:\ncpus:\n")
	if err != nil || v.Keep != nil || v.CPUs != 0 {
		t.Errorf("null values: keep %v cpus %d err %v", v.Keep, v.CPUs, err)
	}
}

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key suggestion", "disk: []\n", "f.yaml:1: disk: unknown key (did you mean disks?)"},
		{"suggestion fits the value", "repositorys: {}\n", "f.yaml:1: repositorys: unknown key (did you mean repositories?)"},
		{"suggestion fits a scalar", "repositorie: x\n", "f.yaml:1: repositorie: unknown key (did you mean repository?)"},
		{"suggestion ignores case", "CPUS: 1\n", "CPUS: unknown key (did you mean cpus?)"},
		{"known keys listed", "disks: [{flavour: x}]\n", "f.yaml:1: disks[0].flavour: unknown key: known keys here are name, path"},
		{"inline keys suggested", "nme: x\n", "nme: unknown key (did you mean name?)"},
		{"duplicate key", "cpus: 1\nrepository: a\ncpus: 2\n", "f.yaml:3: cpus: defined twice (first at line 1): keep one"},
		{"duplicate map key", "repositories:\n  a: x\n  a: y\n", "f.yaml:3: repositories.a: defined twice (first at line 2): keep one"},
		{"not a mapping", "keep: [1]\n", "f.yaml:1: keep: expected a mapping of keys (key: value), got a list"},
		{"key not a word", "repositories:\n  [a]: x\n", "f.yaml:2: repositories: keys must be plain words, got a list"},
		{"not a list", "disks:\n  path: /a\n", "f.yaml:2: disks: expected a list (lines starting with \"- \"), got a mapping (key: value)"},
		{"not a scalar", "repository: [a]\n", "f.yaml:1: repository: expected a single value, got a list"},
		{"not a number", "cpus: many\n", "f.yaml:1: cpus: expected a whole number, got \"many\""},
		{"quoted number", "cpus: \"4\"\n", "cpus: expected a whole number, got \"4\""},
		{"not a bool", "paused: yes please\n", "f.yaml:1: paused: expected true or false, got \"yes please\""},
		{"node decoder", "mode: [a]\n", "f.yaml:1: mode: expected a word, got a list"},
		{"ignored field", "Ignored: x\n", "Ignored: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decode(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "f.yaml" {
				t.Errorf("error is not a *FieldError for f.yaml: %#v", err)
			}
		})
	}
}

func TestDecodeDuplicateIsNotDecoded(t *testing.T) {
	// The second value would be a type error; the duplicate alone is reported.
	_, _, err := decode(t, "cpus: 1\ncpus: x\n")
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("err = %v, want only the duplicate", err)
	}
}

func TestDecodeUnsupportedTypePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Error("no panic for a float field")
		}
	}()
	var f float64
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: "1.5"}
	NewDecoder(NewProblems("f")).Decode(n, "x", reflect.ValueOf(&f).Elem())
}

func TestProblems(t *testing.T) {
	p := NewProblems("f.yaml")
	p.SetLine("vms", 2)
	p.SetLine("vms.a", 3)
	p.SetLine("vms.a.disks[0]", 5)
	if got := p.LineOf("vms.a.disks[0].path"); got != 5 {
		t.Errorf("LineOf falls back to the parent: got %d, want 5", got)
	}
	if got := LineOf(p.Lines(), "other"); got != 0 {
		t.Errorf("LineOf(other) = %d, want 0", got)
	}
	if p.Err() != nil {
		t.Error("Err of no problems is not nil")
	}
	p.Addf("vms.a.disks[0].path", "late")
	p.AddAt(1, "", "early")
	p.Addf("vms.a", "middle")
	if !p.HasUnder("vms.a") || !p.HasUnder("vms") || p.HasUnder("vm") || p.HasUnder("vms.a.disks[1]") {
		t.Error("HasUnder does not match by key path")
	}
	want := "f.yaml:1: early\nf.yaml:3: vms.a: middle\nf.yaml:5: vms.a.disks[0].path: late"
	if got := p.Err().Error(); got != want {
		t.Errorf("Err() =\n%s\nwant\n%s", got, want)
	}
	if p.File() != "f.yaml" {
		t.Errorf("File() = %q", p.File())
	}
}

func TestProblemsCap(t *testing.T) {
	p := NewProblems("f.yaml")
	for i := range MaxReported + 5 {
		p.AddAt(100-i, "k", "problem")
	}
	lines := strings.Split(p.Err().Error(), "\n")
	if len(lines) != MaxReported+1 || lines[MaxReported] != "f.yaml: and 5 more problems" || !strings.HasPrefix(lines[0], "f.yaml:76:") {
		t.Errorf("got %d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestFieldError(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "f.yaml", Line: 3, Key: "vms.a", Problem: "bad"}, "f.yaml:3: vms.a: bad"},
		{FieldError{File: "environment", Key: "DRCTL_SITE", Problem: "bad"}, "environment: DRCTL_SITE: bad"},
		{FieldError{File: "f.yaml", Line: 2, Problem: "invalid YAML"}, "f.yaml:2: invalid YAML"},
		{FieldError{Key: "k", Problem: "bad"}, "k: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	fe := &FieldError{File: "f", Problem: "unreadable", Err: fs.ErrNotExist}
	if !errors.Is(fe, fs.ErrNotExist) {
		t.Error("Unwrap does not expose Err")
	}
}

func TestSyntax(t *testing.T) {
	custom := Syntax{
		MultiDoc: "one document please",
		Hint: func(data []byte, line int, msg string) string {
			if strings.Contains(msg, "mapping values") {
				return " (custom: " + strings.TrimSpace(LineText(data, line)) + ")"
			}
			return ""
		},
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"scanner error line", "a:\n  b: c: d\n", "f.yaml:2: invalid YAML: mapping values are not allowed in this context (custom: b: c: d)"},
		{"unclosed flow sequence", "a:\n  b: [\n", "invalid YAML: did not find expected node content"},
		// yaml.v3 says line 1 here: parser errors count from 0.
		{"parser error line fixed", "a:\n  b: [x,\n  c: d\n", "f.yaml:2: invalid YAML: did not find expected ',' or ']'"},
		{"block hint", "a:\n  - x\n  b: 1\n", "invalid YAML: did not find expected '-' indicator (in the block that starts on this line"},
		{"tabs", "a:\n\tb: 1\n", "f.yaml:2: invalid YAML: found character that cannot start any token (YAML does not allow tabs for indentation: use spaces)"},
		{"two documents", "a: 1\n---\nb: 2\n", "f.yaml:2: one document please"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := custom.Parse("f.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("not a *FieldError: %#v", err)
			}
		})
	}
}

func TestSyntaxErrorWrapsParserError(t *testing.T) {
	_, err := Syntax{}.Parse("f.yaml", []byte("a: [\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Err == nil || !strings.HasPrefix(fe.Err.Error(), "yaml: ") {
		t.Errorf("err = %#v, want the parser error kept in Err", err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, y := range []string{"", "# nothing\n", "---\n"} {
		n, err := Syntax{}.Parse("f.yaml", []byte(y))
		if err != nil || (n != nil && !IsNull(n)) {
			t.Errorf("Parse(%q) = %v, %v; want an empty document", y, n, err)
		}
	}
}

func TestLineText(t *testing.T) {
	data := []byte("a\nb\n")
	for n, want := range map[int]string{0: "", 1: "a", 2: "b", 3: "", 4: ""} {
		if got := LineText(data, n); got != want {
			t.Errorf("LineText(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"disks", "repository", "schedule", "keep"}
	tests := map[string]string{"disk": "disks", "Disks": "disks", "shedule": "schedule", "repo": "", "x": "", "kep": "keep", "keeep": "keep"}
	for word, want := range tests {
		if got := Suggest(word, keys); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", word, got, want)
		}
	}
	if got := DidYouMean("kep", keys); got != " (did you mean keep?)" {
		t.Errorf("DidYouMean(kep) = %q", got)
	}
	if got := DidYouMean("zzzzzz", keys); got != "" {
		t.Errorf("DidYouMean(zzzzzz) = %q, want none", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"disk", "disks", 1}, {"same", "same", 0}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	for in, want := range map[string]string{"vms.web1.disks[0].path": "vms.web1.disks[0]", "vms.web1.disks[0]": "vms.web1.disks", "vms": "", "groups[0].vms[1].vm": "groups[0].vms[1]"} {
		if got := ParentKey(in); got != want {
			t.Errorf("ParentKey(%q) = %q, want %q", in, got, want)
		}
	}
	if got := ChildKey("", "vms"); got != "vms" {
		t.Errorf("ChildKey at the top = %q", got)
	}
	if got := IndexKey(ChildKey("vms.a", "disks"), 2); got != "vms.a.disks[2]" {
		t.Errorf("IndexKey = %q", got)
	}
	if got := SortedKeys(map[string]int{"b": 1, "a": 2, "C": 3}); !reflect.DeepEqual(got, []string{"C", "a", "b"}) {
		t.Errorf("SortedKeys = %q", got)
	}
}
