package chunk_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/drctl/drctl/chunk"
)

func TestIDHexRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ff chunk.ID
	for i := range ff {
		ff[i] = 0xff
	}
	ids := []chunk.ID{{}, ff, {0: 1}, {31: 0x80}}
	for range 50 {
		ids = append(ids, randomID(r))
	}
	for _, id := range ids {
		s := id.String()
		if len(s) != 64 || strings.ToLower(s) != s {
			t.Fatalf("String() = %q: want 64 lowercase hex digits", s)
		}
		if got := id.Short(); got != s[:8] {
			t.Errorf("Short() = %q, want %q", got, s[:8])
		}
		back, err := chunk.ParseID(s)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", s, err)
		}
		if back != id {
			t.Fatalf("ParseID(String()) = %v, want %v", back, id)
		}
		if id.IsZero() != (id == chunk.ID{}) {
			t.Errorf("IsZero(%v) = %v", id, id.IsZero())
		}
	}
}

func TestIDJSON(t *testing.T) {
	id := randomID(rand.New(rand.NewPCG(3, 4)))
	type doc struct {
		ID   chunk.ID            `json:"id"`
		Keys map[chunk.ID]string `json:"keys"`
	}
	in := doc{ID: id, Keys: map[chunk.ID]string{id: "x"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"id":"`+id.String()+`"`) {
		t.Fatalf("JSON %s does not hold the hex id", b)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != id || out.Keys[id] != "x" {
		t.Fatalf("JSON round trip: got %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"id":"abc"}`), &out); err == nil {
		t.Fatal("unmarshalling a short id succeeded")
	}
}

func TestParseIDErrors(t *testing.T) {
	valid := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"one digit short", valid[:63]},
		{"one digit long", valid + "0"},
		{"odd half", valid[:32]},
		{"double length", valid + valid},
		{"non-hex letter", "g" + valid[1:]},
		{"non-hex at end", valid[:63] + "z"},
		{"space", " " + valid[1:]},
		{"0x prefix", "0x" + valid[2:]},
		{"unicode", "é" + valid[2:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := chunk.ParseID(tc.in)
			if err == nil {
				t.Fatalf("ParseID(%q) = %v, want an error", tc.in, id)
			}
			var u chunk.ID
			u[0] = 7
			if err := u.UnmarshalText([]byte(tc.in)); err == nil || u[0] != 7 {
				t.Fatalf("UnmarshalText(%q): err %v; a failed parse must leave the id alone (got %v)", tc.in, err, u)
			}
		})
	}
}

// Upper-case hex parses to the same id; String always gives lower case.
func TestParseIDUpperCase(t *testing.T) {
	id := randomID(rand.New(rand.NewPCG(5, 6)))
	got, err := chunk.ParseID(strings.ToUpper(id.String()))
	if err != nil || got != id {
		t.Fatalf("ParseID(upper) = %v, %v; want %v", got, err, id)
	}
}
