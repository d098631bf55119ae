package plan

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/drctl/drctl/internal/yamlstrict"
)

// Defaults applied by Parse.
const (
	DefaultLease    = 5 * time.Minute
	DefaultTimeout  = 5 * time.Minute // health and drill check timeout
	DefaultInterval = 2 * time.Second // health and drill check retry period
)

// Accelerators (Plan.Accel).
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Network kinds (Network.Kind).
const (
	NetBridge = "bridge"
	NetTap    = "tap"
	NetUser   = "user"
	NetNone   = "none"
)

// Health check kinds (HealthCheck.Kind).
const (
	CheckSerial     = "serial"
	CheckTCP        = "tcp"
	CheckGuestAgent = "guest_agent"
	CheckCommand    = "command"
)

// What to do when a VM does not become healthy (VM.OnFailure).
const (
	OnFailureStop     = "stop"
	OnFailureContinue = "continue"
)

// Plan is a validated recovery plan. Parse fills every default, so callers
// never see zero durations or empty kinds; only Site and StateDir may be
// "" (the caller picks the host name and its own state directory).
type Plan struct {
	Name     string
	Site     string // "" = the caller uses the host name
	StateDir string // absolute when the plan came from a file; "" = caller's default
	File     string // path the plan was loaded from, as given; "" for Parse(data, "")
	Lease    time.Duration
	Accel    string // AccelAuto, AccelKVM or AccelTCG
	Networks map[string]Network
	Groups   []Group
	Drill    DrillSpec

	// lines maps key paths to lines of File, so that errors found after
	// Parse (CheckHost, NetworkFor) can still point into the file.
	lines map[string]int
}

// Network is one recovery-site network. Exactly the fields of its Kind are
// set: Bridge for NetBridge, Tap for NetTap, Forwards and Restrict for
// NetUser, none for NetNone.
type Network struct {
	Name     string
	Kind     string
	Bridge   string
	Tap      string
	Forwards []string // QEMU hostfwd rules, validated
	Restrict bool     // QEMU user networking restrict=on: no traffic out of the guest
}

// Group is a set of VMs started together; groups start in order.
type Group struct {
	Name string
	VMs  []VM
}

// VM is one VM to recover. Zero CPUs/MemoryMiB and empty Kernel, Initrd
// and Append mean "as recorded in the snapshot".
type VM struct {
	VM            string
	RecoveryPoint RecoveryPoint
	CPUs          int
	MemoryMiB     int
	Kernel        string // absolute when the plan came from a file
	Initrd        string
	Append        string
	Networks      map[string]string // source network (primary's netdev id) -> Plan.Networks key
	Health        []HealthCheck
	OnFailure     string // OnFailureStop or OnFailureContinue

	key string // "groups[0].vms[1]", for errors after Parse
}

// HealthCheck is one test that a recovered VM is up. Exactly the field of
// its Kind is set: Pattern (a valid RE2 regexp) for CheckSerial, Addr
// (host:port) for CheckTCP, Command (non-empty argv) for CheckCommand.
type HealthCheck struct {
	Name     string
	Kind     string
	Pattern  string
	Addr     string
	Command  []string
	Timeout  time.Duration
	Interval time.Duration
}

// DrillSpec holds what only DR drills use.
type DrillSpec struct {
	Checks []DrillCheck
}

// DrillCheck is a check run against one VM during a drill.
type DrillCheck struct {
	VM string
	HealthCheck
}

// Load reads and parses the plan at path. Relative paths in it are
// relative to the directory of path.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read recovery plan: %w", err)
	}
	return Parse(data, path)
}

// VMs returns pointers to the plan's VMs in boot order: group by group, in
// each group as listed.
func (p *Plan) VMs() []*VM {
	var out []*VM
	for gi := range p.Groups {
		for vi := range p.Groups[gi].VMs {
			out = append(out, &p.Groups[gi].VMs[vi])
		}
	}
	return out
}

// Lookup returns the plan's entry for the named VM.
func (p *Plan) Lookup(vm string) (*VM, bool) {
	for _, v := range p.VMs() {
		if v.VM == vm {
			return v, true
		}
	}
	return nil, false
}

// NetworkFor returns the network the plan attaches v's NIC on source
// network src to. The source networks are only known from the snapshot,
// so Parse cannot check that every NIC is mapped; this error, which
// points at the VM in the plan, is how the caller reports a gap.
func (p *Plan) NetworkFor(v *VM, src string) (Network, error) {
	name, ok := v.Networks[src]
	if !ok {
		return Network{}, p.fieldError(v.keyOf("networks"), nil,
			"vm %s has a NIC on source network %q, which is not mapped: add %s: <network> under networks: of this VM, using one of the plan's networks (%s)",
			v.VM, src, src, p.networkList())
	}
	n, ok := p.Networks[name]
	if !ok {
		// Parse rejects this; only a hand-built Plan gets here.
		return Network{}, fmt.Errorf("vm %s: source network %q maps to %q, which the plan does not define", v.VM, src, name)
	}
	return n, nil
}

func (p *Plan) networkList() string {
	if len(p.Networks) == 0 {
		return "none are defined: add them under networks:"
	}
	return strings.Join(yamlstrict.SortedKeys(p.Networks), ", ")
}

// keyOf returns the key path of field of v, e.g. "groups[0].vms[1].kernel";
// for a VM that did not come from Parse, "vm NAME.field".
func (v *VM) keyOf(field string) string {
	if v.key == "" {
		return "vm " + v.VM + "." + field
	}
	return yamlstrict.ChildKey(v.key, field)
}

// fieldError makes a FieldError at key, located with the lines Parse saw.
func (p *Plan) fieldError(key string, err error, format string, args ...any) *FieldError {
	file := p.File
	if file == "" {
		file = "plan"
	}
	return &FieldError{File: file, Line: yamlstrict.LineOf(p.lines, key), Key: key, Problem: fmt.Sprintf(format, args...), Err: err}
}

// defaultCheckName names a check that has no name:, for logs and errors,
// e.g. `serial /login:/`.
func defaultCheckName(c HealthCheck) string {
	switch c.Kind {
	case CheckSerial:
		return "serial /" + c.Pattern + "/"
	case CheckTCP:
		return "tcp " + c.Addr
	case CheckCommand:
		args := slices.Clone(c.Command)
		for i, a := range args {
			if a == "" || strings.ContainsAny(a, " \t\n\"'\\") {
				args[i] = fmt.Sprintf("%q", a)
			}
		}
		return "command " + strings.Join(args, " ")
	default:
		return c.Kind
	}
}
