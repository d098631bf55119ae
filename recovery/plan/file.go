package plan

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/drctl/drctl/internal/yamlstrict"
	"go.yaml.in/yaml/v3"
)

// filePlan is the layout of a plan file. Presence of a key (as opposed to
// its zero value) is read from the key lines the decoder records, so the
// "exactly one of" rules can tell "bridge:" from no bridge at all.
type filePlan struct {
	Name     string                 `yaml:"name"`
	Site     string                 `yaml:"site"`
	StateDir string                 `yaml:"state_dir"`
	Lease    duration               `yaml:"lease"`
	Accel    string                 `yaml:"accel"`
	Networks map[string]fileNetwork `yaml:"networks"`
	Groups   []fileGroup            `yaml:"groups"`
	Drill    fileDrill              `yaml:"drill"`
}

type fileNetwork struct {
	Bridge string   `yaml:"bridge"`
	Tap    string   `yaml:"tap"`
	User   fileUser `yaml:"user"`
	None   bool     `yaml:"none"`
}

type fileUser struct {
	Forwards []string `yaml:"forwards"`
	Restrict bool     `yaml:"restrict"`
}

type fileGroup struct {
	Name string   `yaml:"name"`
	VMs  []fileVM `yaml:"vms"`
}

type fileVM struct {
	VM            string            `yaml:"vm"`
	RecoveryPoint recoveryPoint     `yaml:"recovery_point"`
	CPUs          int               `yaml:"cpus"`
	MemoryMiB     int               `yaml:"memory_mib"`
	Kernel        string            `yaml:"kernel"`
	Initrd        string            `yaml:"initrd"`
	Append        string            `yaml:"append"`
	Networks      map[string]string `yaml:"networks"`
	Health        []fileCheck       `yaml:"health"`
	OnFailure     string            `yaml:"on_failure"`
}

type fileCheck struct {
	Name       string   `yaml:"name"`
	Serial     string   `yaml:"serial"`
	TCP        string   `yaml:"tcp"`
	GuestAgent bool     `yaml:"guest_agent"`
	Command    argv     `yaml:"command"`
	Timeout    duration `yaml:"timeout"`
	Interval   duration `yaml:"interval"`
}

type fileDrill struct {
	Checks []fileDrillCheck `yaml:"checks"`
}

type fileDrillCheck struct {
	VM        string `yaml:"vm"`
	fileCheck `yaml:",inline"`
}

// duration is a Go duration string that must be positive; zero means unset.
type duration struct{ d time.Duration }

func (v *duration) DecodeNode(d *yamlstrict.Decoder, n *yaml.Node, key string) {
	if yamlstrict.IsNull(n) {
		return
	}
	const form = "write a number with a unit, such as 30s, 5m or 1h30m"
	if n.Kind != yaml.ScalarNode {
		d.Problems().AddAt(n.Line, key, "expected a duration, got %s: %s", yamlstrict.Describe(n), form)
		return
	}
	if i, err := strconv.Atoi(n.Value); err == nil {
		if i <= 0 {
			d.Problems().AddAt(n.Line, key, "%s is not more than zero: give a positive duration, %s", n.Value, form)
		} else {
			d.Problems().AddAt(n.Line, key, "%s has no unit: write %ss for seconds or %sm for minutes", n.Value, n.Value, n.Value)
		}
		return
	}
	x, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.Problems().AddAt(n.Line, key, "%q is not a duration: %s", n.Value, form)
	case x <= 0:
		d.Problems().AddAt(n.Line, key, "%q is not more than zero: give a positive duration, %s", n.Value, form)
	default:
		v.d = x
	}
}

func (v duration) or(def time.Duration) time.Duration {
	if v.d == 0 {
		return def
	}
	return v.d
}

// argv is a command as a list of program and arguments. It exists to
// explain, when given a string, why drctl does not split shell lines.
type argv []string

func (a *argv) DecodeNode(d *yamlstrict.Decoder, n *yaml.Node, key string) {
	if n.Kind == yaml.ScalarNode && !yamlstrict.IsNull(n) {
		d.Problems().AddAt(n.Line, key, "expected a list of program and arguments, got %s: write command: [\"/usr/local/bin/check\", \"--quick\"], or [\"sh\", \"-c\", %q] to run it as a shell line",
			yamlstrict.Describe(n), n.Value)
		return
	}
	d.DecodeSlice(n, key, reflect.ValueOf((*[]string)(a)).Elem())
}

// DecodeNode accepts "user: true" as well as a mapping, since users
// naturally write it like "none: true".
func (u *fileUser) DecodeNode(d *yamlstrict.Decoder, n *yaml.Node, key string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		if n.Value != "true" {
			d.Problems().AddAt(n.Line, key, "user: %s does not make a network: write user: {} (or user: true) for QEMU user networking, or none: true for a NIC with no link", n.Value)
		}
		return
	}
	type plain fileUser // no DecodeNode: decode as a struct
	d.DecodeStruct(n, key, reflect.ValueOf((*plain)(u)).Elem())
}

// recoveryPoint is "latest", a snapshot id (prefix) or {at: TIME}; the
// zero value means unset (latest).
type recoveryPoint struct{ rp RecoveryPoint }

// hexPattern matches snapshot ids and their prefixes.
var hexPattern = regexp.MustCompile(`^[0-9A-Fa-f]+$`)

// minIDPrefix is the shortest id prefix accepted: shorter ones are likely
// to become ambiguous as snapshots accumulate, and a plan lives for years.
const minIDPrefix = 4

const recoveryPointForms = "use latest, a snapshot id or a unique id prefix of at least 4 hex digits (drctl snapshots lists them), or {at: 2026-11-25T10:00:00Z} for the newest snapshot at or before a time"

func (r *recoveryPoint) DecodeNode(d *yamlstrict.Decoder, n *yaml.Node, key string) {
	switch {
	case yamlstrict.IsNull(n):
	case n.Kind == yaml.MappingNode:
		var at struct {
			At string `yaml:"at"`
		}
		d.DecodeStruct(n, key, reflect.ValueOf(&at).Elem())
		if !d.Problems().Has(key + ".at") {
			if !d.Problems().HasUnder(key) {
				d.Problems().AddAt(n.Line, key, "missing at: %s", recoveryPointForms)
			}
			return
		}
		t, err := time.Parse(time.RFC3339, at.At)
		if err != nil {
			d.Problems().Addf(key+".at", "%q is not a time: write an RFC 3339 time with a zone, such as 2026-11-25T10:00:00Z or 2026-11-25T11:00:00+01:00", at.At)
			return
		}
		r.rp = RecoveryPoint{At: t}
	case n.Kind != yaml.ScalarNode:
		d.Problems().AddAt(n.Line, key, "expected a single value or {at: TIME}, got %s: %s", yamlstrict.Describe(n), recoveryPointForms)
	case n.Value == "latest":
		r.rp = RecoveryPoint{Latest: true}
	case hexPattern.MatchString(n.Value) && len(n.Value) >= minIDPrefix:
		r.rp = RecoveryPoint{ID: strings.ToLower(n.Value)}
	case hexPattern.MatchString(n.Value):
		d.Problems().AddAt(n.Line, key, "id prefix %q is too short: give at least %d hex digits of the snapshot id", n.Value, minIDPrefix)
	case looksLikeTime(n.Value):
		d.Problems().AddAt(n.Line, key, "%q is a time, not a snapshot id: write recovery_point: {at: %s} for the newest snapshot at or before it", n.Value, n.Value)
	default:
		d.Problems().AddAt(n.Line, key, "%q is not a recovery point: %s", n.Value, recoveryPointForms)
	}
}

func looksLikeTime(s string) bool {
	if _, err := time.Parse(time.RFC3339, s); err == nil {
		return true
	}
	_, err := time.Parse(time.DateOnly, s)
	return err == nil || (strings.Count(s, "-") == 2 && strings.Contains(s, ":"))
}
