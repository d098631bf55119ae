package report_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drctl/drctl/recovery/report"
)

func TestJSONRoundTrip(t *testing.T) {
	d := report.Sample()
	var buf bytes.Buffer
	if err := d.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := report.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip changed the drill:\n got %+v\nwant %+v", got, d)
	}
	var again bytes.Buffer
	if err := got.WriteJSON(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatalf("second encoding differs:\n%s\n%s", buf.Bytes(), again.Bytes())
	}
	if !strings.Contains(buf.String(), "\n  \"id\": ") {
		t.Fatalf("not indented:\n%s", buf.Bytes())
	}

	// Every key snake_case, as the rest of the repository's records.
	var tree any
	if err := json.Unmarshal(buf.Bytes(), &tree); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if !snake.MatchString(k) {
					t.Errorf("key %q is not snake_case", k)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(tree)
	// Steps not reached are left out rather than written as year 1.
	if strings.Contains(buf.String(), "0001-01-01") {
		t.Fatalf("zero times in the record:\n%s", buf.Bytes())
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "empty"},
		{"garbage", "not json at all", "parse drill record"},
		{"array", "[1, 2]", "parse drill record"},
		{"other record", `{"run": "abc", "plan": "prod", "declared": "2025-03-14T02:00:00Z"}`, "not a drill record"},
		{"no id", `{"version": 1, "plan": "prod"}`, "not a drill record"},
		{"future", `{"version": 2, "id": "5c1e9b7a2f3d4e60", "plan": "prod"}`, "newer"},
		{"negative", `{"version": -1, "id": "5c1e9b7a2f3d4e60", "plan": "prod"}`, "unknown version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := report.Parse([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want an error with %q", tc.data, d, err, tc.want)
			}
		})
	}
}

func TestFormatSeconds(t *testing.T) {
	for s, want := range map[float64]string{
		0: "0.0 s", 1.23: "1.2 s", 42.04: "42.0 s", 59.96: "1 min", 60: "1 min", 184: "3 min 4 s",
		3600: "1 h", 7500: "2 h 5 min", 90000: "1 d 1 h", -2: "-2.0 s",
	} {
		if got := report.FormatSeconds(s); got != want {
			t.Errorf("FormatSeconds(%v) = %q, want %q", s, got, want)
		}
	}
}

// node is an element of the report, parsed as XML: the page is written
// to be well-formed XML as well as HTML5, so a strict XML parse checks
// it without an HTML parser.
type node struct {
	name     string
	attr     map[string]string
	children []*node
	text     strings.Builder // all text inside, nested elements' included
}

func parsePage(t *testing.T, page []byte) *node {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = true
	root := &node{name: "#document"}
	stack := []*node{root}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, col := dec.InputPos()
			t.Fatalf("the page is not well-formed at %d:%d: %v", line, col, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, n := range stack {
				n.text.Write(tok)
			}
		}
	}
	if len(stack) != 1 {
		t.Fatalf("%d elements left open", len(stack)-1)
	}
	return root
}

func (n *node) all(match func(*node) bool) []*node {
	var out []*node
	for _, c := range n.children {
		if match(c) {
			out = append(out, c)
		}
		out = append(out, c.all(match)...)
	}
	return out
}

func (n *node) byID(t *testing.T, id string) *node {
	t.Helper()
	found := n.all(func(c *node) bool { return c.attr["id"] == id })
	if len(found) != 1 {
		t.Fatalf("%d elements with id %q, want 1", len(found), id)
	}
	return found[0]
}

func tag(name string) func(*node) bool { return func(n *node) bool { return n.name == name } }

func class(c string) func(*node) bool {
	return func(n *node) bool { return strings.Contains(" "+n.attr["class"]+" ", " "+c+" ") }
}

func num(t *testing.T, n *node, attr string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(n.attr[attr], 64)
	if err != nil {
		t.Fatalf("<%s %s=%q>: %v", n.name, attr, n.attr[attr], err)
	}
	return f
}

const hostile = "<script>alert('owned')</script> & \"quotes\" ]]> <!-- x"

func TestHTML(t *testing.T) {
	d := report.Sample()
	d.VMs[1].Checks[1].Output = hostile
	var buf bytes.Buffer
	if err := d.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	doc := parsePage(t, page)

	if !bytes.HasPrefix(page, []byte("<!DOCTYPE html>\n")) {
		t.Fatalf("no HTML5 doctype: %.40q", page)
	}
	if titles := doc.all(tag("title")); titles[0].text.String() != "DR drill prod — FAILED" {
		t.Fatalf("title %q", titles[0].text.String())
	}
	summary := doc.byID(t, "summary").text.String()
	for _, want := range []string{d.ID, "dr-east", "dr-host-1", "2025-03-14 02:00:00 UTC", "2025-03-14 02:05:41 UTC",
		"5 min 41 s", "1 passed, 1 failed", "restrict=on", "Torn down", "2025-03-14 02:05:44 UTC"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q: %s", want, summary)
		}
	}

	rows := doc.byID(t, "vms").all(func(n *node) bool { return n.name == "tr" && class("vm")(n) })
	if len(rows) != len(d.VMs) {
		t.Fatalf("%d VM rows, want %d", len(rows), len(d.VMs))
	}
	for i, want := range [][]string{
		{"db", "data", "3f9a1c2e", "app-consistent", "4 min 48 s", "1 min 45 s", "45.4 s", "2 min 31 s", "PASS"},
		{"web", "frontend", "a7c03e5f", "crash-consistent", "1 min 20 s", "38.4 s", "never healthy", "—", "FAIL"},
	} {
		cells := rows[i].all(tag("td"))
		if len(cells) != len(want) {
			t.Fatalf("row %d: %d cells, want %d", i, len(cells), len(want))
		}
		for j, w := range want {
			if !strings.HasPrefix(cells[j].text.String(), w) {
				t.Errorf("row %d cell %d: %q, want %q first", i, j, cells[j].text.String(), w)
			}
		}
	}

	checks := doc.all(func(n *node) bool { return n.name == "tr" && class("check")(n) })
	if len(checks) != 5 {
		t.Fatalf("%d check rows, want 5", len(checks))
	}
	failed := checks[4]
	if !class("fail")(failed) || !strings.Contains(failed.text.String(), "FAIL") || !strings.Contains(failed.text.String(), "exit status 22") {
		t.Fatalf("failed check row: %q", failed.text.String())
	}
	if pre := failed.all(tag("pre")); len(pre) != 1 || pre[0].text.String() != hostile {
		t.Fatalf("the guest's output did not survive escaping: %v", pre)
	}
	if bytes.Contains(bytes.ToLower(page), []byte("<script")) {
		t.Fatal("raw <script> in the page")
	}
	if !bytes.Contains(page, []byte("&lt;script&gt;")) {
		t.Fatal("escaped <script> missing")
	}
	// Self-contained: nothing is fetched when the page is opened.
	lower := bytes.ToLower(page)
	for _, bad := range []string{"http://", "https://", "<link", " src=", "@import", "<iframe", "<object"} {
		if bytes.Contains(lower, []byte(bad)) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if m := regexp.MustCompile(`url\([^#]`).Find(page); m != nil {
		t.Errorf("the page refers to an outside url: %s", m)
	}

	svg := doc.byID(t, "timeline")
	if svg.name != "svg" {
		t.Fatalf("#timeline is a <%s>", svg.name)
	}
	lanes := svg.all(class("lane"))
	if len(lanes) != len(d.VMs) || lanes[0].attr["data-vm"] != "db" || lanes[1].attr["data-vm"] != "web" {
		t.Fatalf("lanes %v, want one per VM", lanes)
	}
	// The scale from the axis: tick 0 and the last tick.
	ticks := svg.all(class("tick-label"))
	if len(ticks) < 3 || ticks[0].attr["data-seconds"] != "0" {
		t.Fatalf("ticks %v", ticks)
	}
	last := ticks[len(ticks)-1]
	pxPerSecond := (num(t, last, "x") - num(t, ticks[0], "x")) / num(t, last, "data-seconds")
	bars := func(vm string) []*node {
		for _, g := range svg.all(class("bars")) {
			if g.attr["data-vm"] == vm {
				return g.all(class("bar"))
			}
		}
		t.Fatalf("no bars of %s", vm)
		return nil
	}
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.02 {
			t.Errorf("%s: %.3f, want %.3f", what, got, want)
		}
	}
	db := bars("db")
	if len(db) != 2+len(d.VMs[0].Checks) {
		t.Fatalf("db: %d bars, want restore, boot and %d checks", len(db), len(d.VMs[0].Checks))
	}
	restore := db[0]
	if !class("restore")(restore) {
		t.Fatalf("first bar of db is %q", restore.attr["class"])
	}
	near("db restore width", num(t, restore, "width"), d.VMs[0].RestoreSeconds*pxPerSecond)
	near("db restore x", num(t, restore, "x"), num(t, ticks[0], "x")+d.VMs[0].RestoreStart.Sub(d.Started).Seconds()*pxPerSecond)
	near("db boot width", num(t, db[1], "width"), d.VMs[0].BootSeconds*pxPerSecond)
	near("db tcp check width", num(t, db[3], "width"), d.VMs[0].Checks[1].Duration().Seconds()*pxPerSecond)

	web := bars("web")
	boot := web[1]
	if !class("boot")(boot) || !class("failed")(boot) {
		t.Fatalf("web's boot bar is %q: want a failed boot", boot.attr["class"])
	}
	near("web boot width (to the end of the drill)", num(t, boot, "width"), d.Finished.Sub(d.VMs[1].BootStart).Seconds()*pxPerSecond)
	if !class("failed")(web[3]) || class("failed")(web[2]) {
		t.Fatalf("web's checks: %q, %q", web[2].attr["class"], web[3].attr["class"])
	}
	if events := svg.all(class("event")); len(events) != 1 || !strings.Contains(events[0].text.String(), "teardown") {
		t.Fatalf("event marks %v", events)
	}
	if legend := svg.all(class("legend")); len(legend) != 1 || !strings.Contains(legend[0].text.String(), "restore") {
		t.Fatal("no legend")
	}
}

func TestHTMLPassedAndDegenerate(t *testing.T) {
	d := report.Sample()
	d.Passed = true
	var buf bytes.Buffer
	if err := d.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if titles := parsePage(t, buf.Bytes()).all(tag("title")); titles[0].text.String() != "DR drill prod — PASSED" {
		t.Fatalf("title %q", titles[0].text.String())
	}

	// A drill cut short: a skipped VM, a VM that never finished its
	// restore, no times at all. The page must still render.
	t0 := time.Date(2025, 3, 14, 2, 0, 0, 0, time.UTC)
	for _, d := range []*report.Drill{
		{Version: 1, ID: "x", Plan: "p"},
		{Version: 1, ID: "x", Plan: "p", Started: t0, Finished: t0, Error: "interrupted", VMs: []report.VM{
			{VM: "a", Status: report.StatusSkipped},
			{VM: "b|<i>", Status: report.StatusFailed, RestoreStart: t0, Checks: []report.Check{{Name: "never started"}}},
		}},
	} {
		buf.Reset()
		if err := d.WriteHTML(&buf); err != nil {
			t.Fatal(err)
		}
		doc := parsePage(t, buf.Bytes())
		if n := len(doc.byID(t, "timeline").all(class("lane"))); n != len(d.VMs) {
			t.Fatalf("%d lanes, want %d", n, len(d.VMs))
		}
		buf.Reset()
		if err := d.WriteMarkdown(&buf); err != nil {
			t.Fatal(err)
		}
	}
}

// cells splits a Markdown table row on its unescaped pipes.
func cells(row string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row):
			cur.WriteByte(row[i])
			cur.WriteByte(row[i+1])
			i++
		case row[i] == '|':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(row[i])
		}
	}
	out = append(out, strings.TrimSpace(cur.String()))
	return out[1 : len(out)-1] // the row's leading and trailing pipes
}

func TestMarkdown(t *testing.T) {
	d := report.Sample()
	d.VMs[0].Group = "a|b"
	out := "before\n```\nrm -rf /\n```\nafter <script>"
	d.VMs[1].Checks[1].Output = out
	var buf bytes.Buffer
	if err := d.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	if !strings.HasPrefix(md, "# DR drill prod — FAILED\n") {
		t.Fatalf("heading: %.40q", md)
	}
	for _, want := range []string{"- **Drill:** `" + d.ID + "`", "- **VMs:** 1 passed, 1 failed", "2025-03-14 02:00:00 UTC", "restrict=on"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q", want)
		}
	}

	var rows []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "|") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 2+len(d.VMs) {
		t.Fatalf("%d table lines, want header, separator and %d VMs:\n%s", len(rows), len(d.VMs), md)
	}
	for i, r := range rows {
		if n := len(cells(r)); n != 9 {
			t.Errorf("table line %d has %d cells, want 9: %s", i, n, r)
		}
	}
	db := cells(rows[2])
	if db[0] != "db" || db[1] != `a\|b` || db[8] != "**PASS**" || !strings.Contains(db[2], "3f9a1c2e") {
		t.Fatalf("db row: %q", db)
	}
	if web := cells(rows[3]); web[0] != "web" || web[6] != "never healthy" || web[8] != "**FAIL**" {
		t.Fatalf("web row: %q", web)
	}

	// The output as it was, in a fence longer than its own backticks.
	if !strings.Contains(md, "\n````text\n"+out+"\n````\n") {
		t.Fatalf("failed check output not fenced:\n%s", md)
	}
	if !strings.Contains(md, "**Check app health** (command) FAILED after 120 attempts: exit status 22") {
		t.Fatalf("failed check not named:\n%s", md)
	}
	// Passed checks stay out of a ticket.
	if strings.Contains(md, "boot complete") || strings.Contains(md, "login:") {
		t.Fatalf("passed checks in the Markdown:\n%s", md)
	}

	d = report.Sample()
	d.Passed = true
	for i := range d.VMs {
		d.VMs[i].Status = report.StatusPassed
		for j := range d.VMs[i].Checks {
			d.VMs[i].Checks[j].OK = true
		}
	}
	buf.Reset()
	if err := d.WriteMarkdown(&buf); err != nil {
		t.Fatal(err)
	}
	if md := buf.String(); !strings.HasPrefix(md, "# DR drill prod — PASSED\n") || strings.Contains(md, "Failures") {
		t.Fatalf("passed drill:\n%s", md)
	}
}
