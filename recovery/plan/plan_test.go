package plan

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	p, err := Load("example.yaml")
	if err != nil {
		t.Fatalf("Load(example.yaml): %v", err)
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "prod" || p.Site != "dr1" || p.File != "example.yaml" || p.Lease != 5*time.Minute || p.Accel != AccelAuto {
		t.Errorf("top level = name %q site %q file %q lease %v accel %q", p.Name, p.Site, p.File, p.Lease, p.Accel)
	}
	if want := filepath.Join(dir, "state"); p.StateDir != want {
		t.Errorf("StateDir = %q, want %q (relative to the plan file)", p.StateDir, want)
	}
	wantNets := map[string]Network{
		"lan": {Name: "lan", Kind: NetBridge, Bridge: "br0"},
		"dmz": {Name: "dmz", Kind: NetTap, Tap: "tap7"},
		"nat": {Name: "nat", Kind: NetUser, Forwards: []string{"tcp:127.0.0.1:2222-:22", "udp::5353-:53"}},
		"off": {Name: "off", Kind: NetNone},
	}
	if !reflect.DeepEqual(p.Networks, wantNets) {
		t.Errorf("Networks =\n%+v\nwant\n%+v", p.Networks, wantNets)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	wantGroups := []Group{
		{Name: "databases", VMs: []VM{{
			VM: "db1", RecoveryPoint: RecoveryPoint{Latest: true}, CPUs: 2, MemoryMiB: 2048,
			Networks: map[string]string{"lan": "lan", "mgmt": "off"},
			Health: []HealthCheck{
				{Name: "serial /login:/", Kind: CheckSerial, Pattern: "login:", Timeout: 2 * time.Minute, Interval: DefaultInterval},
				{Name: "postgres port", Kind: CheckTCP, Addr: "127.0.0.1:15432", Timeout: DefaultTimeout, Interval: DefaultInterval},
				{Name: "command /usr/local/bin/check-db --quick", Kind: CheckCommand, Command: []string{"/usr/local/bin/check-db", "--quick"},
					Timeout: DefaultTimeout, Interval: 5 * time.Second},
			},
			OnFailure: OnFailureStop, key: "groups[0].vms[0]",
		}}},
		{Name: "apps", VMs: []VM{{
			VM: "app1", RecoveryPoint: RecoveryPoint{ID: "3f2a9c01"},
			Networks:  map[string]string{"lan": "lan", "public": "dmz"},
			Health:    []HealthCheck{{Name: "guest_agent", Kind: CheckGuestAgent, Timeout: DefaultTimeout, Interval: DefaultInterval}},
			OnFailure: OnFailureContinue, key: "groups[1].vms[0]",
		}, {
			VM: "jump", RecoveryPoint: RecoveryPoint{At: at},
			Kernel: filepath.Join(dir, "boot", "vmlinuz-6.1"), Initrd: filepath.Join(dir, "boot", "initrd-6.1"),
			Append:   "console=ttyS0 root=/dev/vda1",
			Networks: map[string]string{"user0": "nat"}, OnFailure: OnFailureStop, key: "groups[1].vms[1]",
		}}},
	}
	if !reflect.DeepEqual(p.Groups, wantGroups) {
		t.Errorf("Groups =\n%+v\nwant\n%+v", p.Groups, wantGroups)
	}
	wantDrill := DrillSpec{Checks: []DrillCheck{{VM: "db1", HealthCheck: HealthCheck{
		Name: `command sh -c "grep -q ready \"$DRCTL_SERIAL_LOG\""`, Kind: CheckCommand,
		Command: []string{"sh", "-c", `grep -q ready "$DRCTL_SERIAL_LOG"`}, Timeout: time.Minute, Interval: DefaultInterval,
	}}}}
	if !reflect.DeepEqual(p.Drill, wantDrill) {
		t.Errorf("Drill =\n%+v\nwant\n%+v", p.Drill, wantDrill)
	}

	var names []string
	for _, v := range p.VMs() {
		names = append(names, v.VM)
	}
	if got := strings.Join(names, ","); got != "db1,app1,jump" {
		t.Errorf("VMs() = %s, want boot order db1,app1,jump", got)
	}
	v, ok := p.Lookup("app1")
	if !ok || v != &p.Groups[1].VMs[0] {
		t.Errorf("Lookup(app1) = %p, %v; want a pointer into Groups", v, ok)
	}
	if _, ok := p.Lookup("nope"); ok {
		t.Error("Lookup(nope) found something")
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := Parse([]byte("groups:\n  - vms:\n      - vm: web1\n        health: [{tcp: \"10.0.0.5:80\"}]\n  - vms: [{vm: web2}]\n"), "/etc/drctl/plans/web.plan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "web.plan" || p.Site != "" || p.StateDir != "" || p.Lease != DefaultLease || p.Accel != AccelAuto {
		t.Errorf("defaults: %+v", p)
	}
	if p.Groups[0].Name != "group1" || p.Groups[1].Name != "group2" {
		t.Errorf("group names = %q, %q; want group1, group2", p.Groups[0].Name, p.Groups[1].Name)
	}
	vm := p.Groups[0].VMs[0]
	if !vm.RecoveryPoint.Latest || vm.OnFailure != OnFailureStop || vm.Networks == nil {
		t.Errorf("vm defaults: %+v", vm)
	}
	want := HealthCheck{Name: "tcp 10.0.0.5:80", Kind: CheckTCP, Addr: "10.0.0.5:80", Timeout: DefaultTimeout, Interval: DefaultInterval}
	if !reflect.DeepEqual(vm.Health, []HealthCheck{want}) {
		t.Errorf("health = %+v, want %+v", vm.Health, want)
	}
}

func TestParseWithoutFile(t *testing.T) {
	_, err := Parse([]byte("groups: [{vms: [{vm: a}]}]\n"), "")
	if err == nil || !strings.Contains(err.Error(), "plan: name: missing: set name:") {
		t.Errorf("err = %v, want name required without a file", err)
	}
	p, err := Parse([]byte("name: x\nstate_dir: rel/dir\ngroups: [{vms: [{vm: a, kernel: k}]}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.StateDir != "rel/dir" || p.Groups[0].VMs[0].Kernel != "k" {
		t.Errorf("paths = %q, %q; want them left relative", p.StateDir, p.Groups[0].VMs[0].Kernel)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "groups:\n  - name: g\n    vms:\n" // lines 1-3
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error; FILE is the file name
	}{
		{"unknown top-level key", "group:\n  - vms: [{vm: a}]\n",
			[]string{"FILE:1: group: unknown key (did you mean groups?)"}},
		{"unknown vm key", head + "      - vm: a\n        recovery_pont: latest\n",
			[]string{"FILE:5: groups[0].vms[0].recovery_pont: unknown key (did you mean recovery_point?)"}},
		{"unknown key lists known", head + "      - vm: a\n        health: [{ping: x}]\n",
			[]string{"FILE:5: groups[0].vms[0].health[0].ping: unknown key: known keys here are command, guest_agent, interval, name, serial, tcp, timeout"}},
		{"wrong type int", head + "      - vm: a\n        cpus: two\n",
			[]string{"FILE:5: groups[0].vms[0].cpus: expected a whole number, got \"two\""}},
		{"wrong type list", "groups:\n  name: g\n", []string{"FILE:2: groups: expected a list"}},
		{"wrong type bool", "networks:\n  off: {none: yes}\n" + head + "      - vm: a\n",
			[]string{"FILE:2: networks.off.none: expected true or false, got \"yes\""}},
		{"command as string", head + "      - vm: a\n        health:\n          - command: check-db --quick\n",
			[]string{"FILE:6: groups[0].vms[0].health[0].command: expected a list of program and arguments", `["sh", "-c", "check-db --quick"]`}},
		{"duplicate key", head + "      - vm: a\n        cpus: 1\n        cpus: 2\n",
			[]string{"FILE:6: groups[0].vms[0].cpus: defined twice (first at line 5): keep one"}},
		{"duplicate vm", head + "      - vm: a\n  - name: h\n    vms:\n      - vm: a\n",
			[]string{"FILE:7: groups[1].vms[0].vm: vm a is already in the plan at groups[0].vms[0].vm (line 4): list each VM once"}},
		{"duplicate group", head + "      - vm: a\n  - name: g\n    vms: [{vm: b}]\n",
			[]string{"FILE:5: groups[1].name: group name \"g\" is already used by groups[0].name (line 2)"}},
		{"undefined network", "networks:\n  lan: {bridge: br0}\n  dmz: {tap: tap1}\n" + head + "      - vm: a\n        networks: {eth: lna}\n",
			[]string{"FILE:8: groups[0].vms[0].networks.eth: network \"lna\" is not defined under networks: (did you mean lan?) (defined: dmz, lan): use one of those, or add lna under networks:"}},
		{"no networks defined", head + "      - vm: a\n        networks: {eth: lan}\n",
			[]string{"FILE:5: groups[0].vms[0].networks.eth: network \"lan\" is not defined, and the plan has no networks: add lan under networks:"}},
		{"two network kinds", "networks:\n  lan: {bridge: br0, tap: tap0}\n" + head + "      - vm: a\n",
			[]string{"FILE:2: networks.lan.tap: set together with bridge: a network is exactly one of bridge, tap, user, none"}},
		{"no network kind", "networks:\n  lan: {}\n" + head + "      - vm: a\n",
			[]string{"FILE:2: networks.lan: no network kind: set one of bridge"}},
		{"network typo not doubled", "networks:\n  lan: {bridg: br0}\n" + head + "      - vm: a\n",
			[]string{"FILE:2: networks.lan.bridg: unknown key (did you mean bridge?)"}},
		{"bad network name", "networks:\n  \"a b\": {none: true}\n" + head + "      - vm: a\n",
			[]string{"FILE:2: networks.a b: \"a b\" is not a valid network name"}},
		{"none false", "networks:\n  off: {none: false}\n" + head + "      - vm: a\n",
			[]string{"networks.off.none: none: false does not make a network: write none: true"}},
		{"bridge name too long", "networks:\n  lan: {bridge: averyveryverylongbridge}\n" + head + "      - vm: a\n",
			[]string{"networks.lan.bridge: \"averyveryverylongbridge\" is longer than 15 characters"}},
		{"bad forward", "networks:\n  nat:\n    user:\n      forwards: [\"tcp:2222:22\"]\n" + head + "      - vm: a\n",
			[]string{"FILE:4: networks.nat.user.forwards[0]: \"tcp:2222:22\" has no '-'", "tcp:127.0.0.1:2222-:22"}},
		{"forward bad port", "networks:\n  nat: {user: {forwards: [\"tcp::ssh-:22\"]}}\n" + head + "      - vm: a\n",
			[]string{"networks.nat.user.forwards[0]: \"tcp::ssh-:22\": port \"ssh\" is not a number from 1 to 65535"}},
		{"forward bad proto", "networks:\n  nat: {user: {forwards: [\"sctp::1-:2\"]}}\n" + head + "      - vm: a\n",
			[]string{"protocol \"sctp\" is not tcp or udp"}},
		{"forwarded port twice", "networks:\n  n1: {user: {forwards: [\"tcp:127.0.0.1:2222-:22\"]}}\n  n2: {user: {forwards: [\"tcp::2222-:22\"]}}\n" + head + "      - vm: a\n",
			[]string{"FILE:3: networks.n2.user.forwards[0]: host tcp port 2222 is already forwarded by networks.n1.user.forwards[0] (line 2)"}},
		{"user false", "networks:\n  nat: {user: false}\n" + head + "      - vm: a\n",
			[]string{"networks.nat.user: user: false does not make a network"}},
		{"tap used twice", "networks:\n  t: {tap: tap0}\n" + head + "      - vm: a\n        networks: {e0: t}\n      - vm: b\n        networks: {e0: t}\n",
			[]string{"FILE:9: groups[0].vms[1].networks.e0: network t is already used by groups[0].vms[0].networks.e0 (line 7), and tap device tap0 can carry one NIC"}},
		{"two check kinds", head + "      - vm: a\n        health:\n          - serial: login\n            tcp: 127.0.0.1:22\n",
			[]string{"FILE:7: groups[0].vms[0].health[0].tcp: set together with serial in one check: each check tests one thing: make them two list items"}},
		{"no check kind", head + "      - vm: a\n        health:\n          - timeout: 1m\n",
			[]string{"FILE:6: groups[0].vms[0].health[0]: no check: set one of serial: REGEXP, tcp: HOST:PORT, guest_agent: true or command: [PROGRAM, ARGS...]"}},
		{"bad regex", head + "      - vm: a\n        health:\n          - serial: \"login(\"\n",
			[]string{"FILE:6: groups[0].vms[0].health[0].serial: \"login(\" is not a valid regular expression (error parsing regexp: missing closing )", "escape ( ) [ ]"}},
		{"tcp no port", head + "      - vm: a\n        health: [{tcp: db1}]\n",
			[]string{"FILE:5: groups[0].vms[0].health[0].tcp: \"db1\" is not host:port: write e.g. tcp: 127.0.0.1:22"}},
		{"tcp named port", head + "      - vm: a\n        health: [{tcp: \"db1:postgres\"}]\n",
			[]string{"health[0].tcp: port \"postgres\" is not a number from 1 to 65535"}},
		{"tcp no host", head + "      - vm: a\n        health: [{tcp: \":5432\"}]\n",
			[]string{"health[0].tcp: \":5432\" names no host", "127.0.0.1:5432"}},
		{"guest agent false", head + "      - vm: a\n        health: [{guest_agent: false}]\n",
			[]string{"health[0].guest_agent: guest_agent: false checks nothing"}},
		{"empty command", head + "      - vm: a\n        health: [{command: []}]\n",
			[]string{"FILE:5: groups[0].vms[0].health[0].command: empty: give the program and its arguments"}},
		{"duplicate check name", head + "      - vm: a\n        health:\n          - tcp: 127.0.0.1:22\n          - tcp: 127.0.0.1:22\n",
			[]string{"FILE:7: groups[0].vms[0].health[1]: check \"tcp 127.0.0.1:22\" is already defined at groups[0].vms[0].health[0] (line 6)"}},
		{"bad duration", head + "      - vm: a\n        health: [{tcp: \"h:1\", timeout: 5 minutes}]\n",
			[]string{"FILE:5: groups[0].vms[0].health[0].timeout: \"5 minutes\" is not a duration: write a number with a unit, such as 30s, 5m or 1h30m"}},
		{"duration without unit", "lease: 300\n" + head + "      - vm: a\n",
			[]string{"FILE:1: lease: 300 has no unit: write 300s for seconds or 300m for minutes"}},
		{"zero duration", "lease: 0s\n" + head + "      - vm: a\n",
			[]string{"FILE:1: lease: \"0s\" is not more than zero"}},
		{"negative duration", head + "      - vm: a\n        health: [{tcp: \"h:1\", interval: -1s}]\n",
			[]string{"health[0].interval: \"-1s\" is not more than zero"}},
		{"recovery point short prefix", head + "      - vm: a\n        recovery_point: 3f2\n",
			[]string{"FILE:5: groups[0].vms[0].recovery_point: id prefix \"3f2\" is too short: give at least 4 hex digits"}},
		{"recovery point not hex", head + "      - vm: a\n        recovery_point: yesterday\n",
			[]string{"FILE:5: groups[0].vms[0].recovery_point: \"yesterday\" is not a recovery point: use latest, a snapshot id"}},
		{"recovery point bare time", head + "      - vm: a\n        recovery_point: 2026-11-25T10:00:00Z\n",
			[]string{"recovery_point: \"2026-11-25T10:00:00Z\" is a time, not a snapshot id: write recovery_point: {at: 2026-11-25T10:00:00Z}"}},
		{"recovery point bad time", head + "      - vm: a\n        recovery_point: {at: 2026-11-25}\n",
			[]string{"FILE:5: groups[0].vms[0].recovery_point.at: \"2026-11-25\" is not a time: write an RFC 3339 time with a zone"}},
		{"recovery point unknown key", head + "      - vm: a\n        recovery_point: {after: 2026-11-25T10:00:00Z}\n",
			[]string{"recovery_point.after: unknown key: known keys here are at"}},
		{"recovery point empty mapping", head + "      - vm: a\n        recovery_point: {}\n",
			[]string{"FILE:5: groups[0].vms[0].recovery_point: missing at:"}},
		{"recovery point list", head + "      - vm: a\n        recovery_point: [latest]\n",
			[]string{"recovery_point: expected a single value or {at: TIME}, got a list"}},
		{"empty groups", "groups: []\n", []string{"FILE:1: groups: no groups: list at least one group"}},
		{"missing groups", "name: x\n", []string{"FILE: groups: no groups"}},
		{"group without vms", "groups:\n  - name: g\n", []string{"FILE:2: groups[0].vms: no VMs: list the VMs this group starts"}},
		{"vm missing", head + "      - cpus: 1\n", []string{"FILE:4: groups[0].vms[0].vm: missing: set the name of the VM"}},
		{"bad vm name", head + "      - vm: \"db 1\"\n", []string{"FILE:4: groups[0].vms[0].vm: \"db 1\" is not a valid VM name"}},
		{"negative cpus", head + "      - vm: a\n        cpus: -1\n", []string{"FILE:5: groups[0].vms[0].cpus: -1 is negative"}},
		{"negative memory", head + "      - vm: a\n        memory_mib: -5\n", []string{"groups[0].vms[0].memory_mib: -5 is negative"}},
		{"bad on_failure", head + "      - vm: a\n        on_failure: ignore\n",
			[]string{"FILE:5: groups[0].vms[0].on_failure: \"ignore\" is not a choice: use stop (do not start later groups) or continue"}},
		{"bad accel", "accel: xen\n" + head + "      - vm: a\n", []string{"FILE:1: accel: \"xen\" is not an accelerator: use auto"}},
		{"bad plan name", "name: \"my plan\"\n" + head + "      - vm: a\n", []string{"FILE:1: name: \"my plan\" is not a valid plan name"}},
		{"tilde path", "state_dir: ~/dr\n" + head + "      - vm: a\n", []string{"FILE:1: state_dir: \"~/dr\": plans do not expand ~"}},
		{"drill unknown vm", head + "      - vm: db1\ndrill:\n  checks:\n    - vm: db2\n      tcp: 127.0.0.1:1\n",
			[]string{"FILE:7: drill.checks[0].vm: vm \"db2\" is not in the plan (did you mean db1?) (VMs: db1)"}},
		{"drill missing vm", head + "      - vm: a\ndrill:\n  checks:\n    - tcp: 127.0.0.1:1\n",
			[]string{"drill.checks[0].vm: missing: name the VM"}},
		{"top level list", "- a\n", []string{"FILE:1: the top level must be a mapping"}},
		{"empty file", "# nothing\n", []string{"FILE: the plan is empty"}},
		{"invalid yaml", "groups:\n  - vms: [\n", []string{"FILE:", "invalid YAML"}},
		{"flow mapping", head + "      - vm: a\n        health: [{serial: login: }]\n",
			[]string{"FILE:5: invalid YAML: did not find expected ',' or '}' (check the brackets, and quote"}},
		{"block mapping", head + "      - vm: a\n     cpus: 1\n", []string{"FILE:2: invalid YAML: did not find expected key (in the block that starts on this line"}},
		{"mapping values", head + "      - vm: a\n        health:\n          - serial: login: x\n",
			[]string{"FILE:6: invalid YAML: mapping values are not allowed in this context (check the indentation, and quote"}},
		{"two documents", head + "      - vm: a\n---\nname: x\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const file = "plans/p.yaml"
			_, err := Parse([]byte(tt.yaml), file)
			if err == nil {
				t.Fatalf("Parse succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", file)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != file {
				t.Errorf("error is not a *FieldError for %s: %#v", file, err)
			}
		})
	}
}

func TestParseReportsAllProblemsInLineOrder(t *testing.T) {
	y := "lease: 5\n" +
		"accel: fast\n" +
		"groups:\n" +
		"  - vms:\n" +
		"      - vm: a\n" +
		"        networks: {e: nowhere}\n" +
		"        health: [{serial: \"(\", tcp: x}]\n" +
		"        on_failure: maybe\n"
	_, err := Parse([]byte(y), "p.yaml")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"p.yaml:1: lease:", "p.yaml:2: accel:", "p.yaml:6: groups[0].vms[0].networks.e:", "p.yaml:7: groups[0].vms[0].health[0].tcp: set together with serial",
		"p.yaml:7: groups[0].vms[0].health[0].serial: \"(\" is not a valid regular expression", "p.yaml:7: groups[0].vms[0].health[0].tcp: \"x\" is not host:port", "p.yaml:8: groups[0].vms[0].on_failure:"}
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestParseTypoIsReportedOnce(t *testing.T) {
	// A misspelt kind is one mistake: "unknown key", not also "no kind".
	for _, y := range []string{
		"networks:\n  lan: {bridg: br0}\ngroups: [{vms: [{vm: a}]}]\n",
		"groups: [{vms: [{vm: a, health: [{seriall: x}]}]}]\n",
	} {
		_, err := Parse([]byte(y), "p.yaml")
		if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "unknown key (did you mean") {
			t.Errorf("%q: err = %v, want only the unknown key", y, err)
		}
	}
}

func TestParseCapsProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("groups:\n  - vms:\n")
	for range 30 {
		b.WriteString("      - vm: a\n        cpus: -1\n")
	}
	_, err := Parse([]byte(b.String()), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "and 39 more problems") {
		t.Errorf("err = %v, want capped at %d with a count of the rest", err, maxReported)
	}
}

func TestParseAnchorsAndUserTrue(t *testing.T) {
	y := `networks:
  nat: {user: true}
groups:
  - vms:
      - vm: a
        networks: {n: nat}
        health:
          - &ping {guest_agent: true, timeout: 30s}
          - {<<: *ping, name: again}
`
	p, err := Parse([]byte(y), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Networks["nat"]; n.Kind != NetUser || len(n.Forwards) != 0 {
		t.Errorf("nat = %+v, want a user network", n)
	}
	h := p.Groups[0].VMs[0].Health
	if len(h) != 2 || h[1].Name != "again" || h[1].Kind != CheckGuestAgent || h[1].Timeout != 30*time.Second {
		t.Errorf("health = %+v, want the merged check", h)
	}
}

func TestNetworkFor(t *testing.T) {
	p, err := Parse([]byte("networks:\n  lan: {bridge: br0}\n  off: {none: true}\ngroups:\n  - vms:\n      - vm: a\n        networks: {net0: lan}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := p.Lookup("a")
	n, err := p.NetworkFor(v, "net0")
	if err != nil || n.Name != "lan" || n.Bridge != "br0" {
		t.Errorf("NetworkFor(net0) = %+v, %v", n, err)
	}
	_, err = p.NetworkFor(v, "mgmt")
	want := `p.yaml:7: groups[0].vms[0].networks: vm a has a NIC on source network "mgmt", which is not mapped: add mgmt: <network> under networks: of this VM, using one of the plan's networks (lan, off)`
	if err == nil || err.Error() != want {
		t.Errorf("NetworkFor(mgmt) error =\n%v\nwant\n%s", err, want)
	}
}

func TestParentKey(t *testing.T) {
	for in, want := range map[string]string{
		"groups[0].vms[1].vm": "groups[0].vms[1]",
		"groups[0].vms[1]":    "groups[0].vms",
		"groups":              "",
	} {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%q) = %q, want %q", in, got, want)
		}
	}
}
