package plan

import (
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/drctl/drctl/internal/yamlstrict"
	"go.yaml.in/yaml/v3"
)

// namePattern is what plan, site, group, network and VM names must match;
// it is the repository's rule for VM names, so a VM named in a plan can
// exist in the repository.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

const nameRule = "use letters, digits, '.', '_' and '-', starting with a letter or digit"

// Allowed values, in the order messages list them. Never modified.
var (
	accels     = []string{AccelAuto, AccelKVM, AccelTCG}
	netKinds   = []string{NetBridge, NetTap, NetUser, NetNone}
	checkKinds = []string{CheckSerial, CheckTCP, CheckGuestAgent, CheckCommand}
	onFailures = []string{OnFailureStop, OnFailureContinue}
)

const (
	maxIfname   = 15 // IFNAMSIZ-1 in Linux
	forwardForm = "use [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport, e.g. tcp:127.0.0.1:2222-:22"
)

// Parse decodes and validates a plan. file names the plan in errors,
// provides the default name, and is the base of relative paths; it may be
// "" for a plan that is not from a file (then name: is required and
// relative paths stay relative to the working directory). The error joins
// up to 20 *FieldError, sorted by line.
func Parse(data []byte, file string) (*Plan, error) {
	root, err := planSyntax.Parse(file, data)
	if err != nil {
		return nil, err
	}
	p := newProblems(file)
	if root == nil {
		return nil, &FieldError{File: p.File(), Problem: "the plan is empty: list the VMs to recover under groups: (see example.yaml in the drctl sources)"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: p.File(), Line: root.Line, Problem: fmt.Sprintf("the top level must be a mapping of settings (name:, site:, networks:, groups: ...), got %s", yamlstrict.Describe(root))}
	}
	var fp filePlan
	yamlstrict.NewDecoder(p).Decode(root, "", reflect.ValueOf(&fp).Elem())
	b := &builder{p: p, file: file, vmKeys: map[string]string{}, singleUse: map[string]string{}}
	if file != "" {
		b.dir = filepath.Dir(file)
	}
	plan := b.build(&fp)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return plan, nil
}

// builder turns a decoded filePlan into a Plan, recording problems.
type builder struct {
	p    *yamlstrict.Problems
	file string
	dir  string // base of relative paths; "" = leave them relative

	vmKeys    map[string]string // VM name -> key of its entry
	singleUse map[string]string // network that can carry one NIC -> key of its use
	hostPorts []hostPort        // forwarded host ports, for conflicts
}

type hostPort struct {
	proto, addr string
	port        int
	key         string
}

func (b *builder) build(fp *filePlan) *Plan {
	p := b.p
	pl := &Plan{
		Name:     b.name(fp.Name),
		Site:     fp.Site,
		StateDir: b.path("state_dir", fp.StateDir),
		File:     b.file,
		Lease:    fp.Lease.or(DefaultLease),
		Accel:    fp.Accel,
		Networks: map[string]Network{},
		lines:    p.Lines(),
	}
	if pl.Site != "" && !namePattern.MatchString(pl.Site) {
		p.Addf("site", "%q is not a valid site name: %s (or leave site: out to use the host name)", pl.Site, nameRule)
	}
	switch {
	case pl.Accel == "":
		pl.Accel = AccelAuto
	case !slices.Contains(accels, pl.Accel):
		p.Addf("accel", "%q is not an accelerator: use auto (KVM when /dev/kvm is usable, else TCG), kvm or tcg", pl.Accel)
	}
	for _, name := range yamlstrict.SortedKeys(fp.Networks) {
		pl.Networks[name] = b.network(name, fp.Networks[name])
	}
	if len(fp.Groups) == 0 {
		p.Addf("groups", "no groups: list at least one group with at least one VM, e.g. groups: [{name: all, vms: [{vm: web1}]}]")
	}
	groupKeys := map[string]string{}
	for gi := range fp.Groups {
		pl.Groups = append(pl.Groups, b.group(yamlstrict.IndexKey("groups", gi), gi, &fp.Groups[gi], groupKeys, pl.Networks))
	}
	for i := range fp.Drill.Checks {
		pl.Drill.Checks = append(pl.Drill.Checks, b.drillCheck(yamlstrict.IndexKey("drill.checks", i), &fp.Drill.Checks[i]))
	}
	return pl
}

func (b *builder) name(name string) string {
	switch {
	case name != "":
		if !namePattern.MatchString(name) {
			b.p.Addf("name", "%q is not a valid plan name: %s", name, nameRule)
		}
	case b.file != "":
		base := filepath.Base(b.file)
		name = strings.TrimSuffix(base, filepath.Ext(base))
		if !namePattern.MatchString(name) {
			b.p.Addf("name", "missing, and the default %q (the file name without extension) is not a valid name: set name: (%s)", name, nameRule)
		}
	default:
		b.p.Addf("name", "missing: set name: (the plan was not read from a file, so there is no file name to default to)")
	}
	return name
}

// path resolves a path written in the plan against the plan's directory.
func (b *builder) path(key, s string) string {
	switch {
	case s == "":
		return ""
	case strings.HasPrefix(s, "~"):
		b.p.Addf(key, "%q: plans do not expand ~: write the full path", s)
		return s
	case filepath.IsAbs(s) || b.dir == "":
		return filepath.Clean(s)
	}
	abs, err := filepath.Abs(filepath.Join(b.dir, s))
	if err != nil {
		return filepath.Join(b.dir, s)
	}
	return abs
}

func (b *builder) network(name string, fn fileNetwork) Network {
	p, key := b.p, "networks."+name
	if !namePattern.MatchString(name) {
		p.Addf(key, "%q is not a valid network name: %s", name, nameRule)
	}
	n := Network{Name: name}
	kinds := b.present(key, netKinds)
	switch len(kinds) {
	case 0:
		if !p.HasUnder(key) {
			p.Addf(key, "no network kind: set one of bridge: BRIDGE (an existing Linux bridge), tap: TAP (an existing tap device), user: {} (QEMU user networking) or none: true (a NIC with no link)")
		}
		return n
	case 1:
		n.Kind = kinds[0]
	default:
		p.Addf(yamlstrict.ChildKey(key, kinds[1]), "set together with %s: a network is exactly one of bridge, tap, user, none: keep one", kinds[0])
		return n
	}
	switch n.Kind {
	case NetBridge:
		n.Bridge = fn.Bridge
		b.ifname(yamlstrict.ChildKey(key, NetBridge), "bridge", fn.Bridge)
	case NetTap:
		n.Tap = fn.Tap
		b.ifname(yamlstrict.ChildKey(key, NetTap), "tap device", fn.Tap)
	case NetUser:
		n.Forwards, n.Restrict = fn.User.Forwards, fn.User.Restrict
		for i, f := range n.Forwards {
			b.forward(yamlstrict.IndexKey(key+".user.forwards", i), f)
		}
	case NetNone:
		if !fn.None {
			p.Addf(yamlstrict.ChildKey(key, NetNone), "none: false does not make a network: write none: true for a NIC with no link, or use bridge, tap or user")
		}
	}
	return n
}

// present returns which of keys are written under parent, in keys' order.
func (b *builder) present(parent string, keys []string) []string {
	var out []string
	for _, k := range keys {
		if b.p.Has(yamlstrict.ChildKey(parent, k)) {
			out = append(out, k)
		}
	}
	return out
}

// ifname checks a Linux interface name the way the kernel does
// (dev_valid_name), so a typo is caught before failover.
func (b *builder) ifname(key, what, name string) {
	switch {
	case name == "":
		b.p.Addf(key, "missing: name the %s on this host", what)
	case len(name) > maxIfname:
		b.p.Addf(key, "%q is longer than %d characters, the Linux limit for interface names: check the %s name", name, maxIfname, what)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n"):
		b.p.Addf(key, "%q is not a valid Linux interface name (no '/', ':' or spaces): check the %s name", name, what)
	}
}

// forward checks a QEMU hostfwd rule and that its host port is not
// forwarded twice: every QEMU binds its forwards on the one recovery host.
func (b *builder) forward(key, rule string) {
	proto, rest, ok := strings.Cut(rule, ":")
	if !ok {
		b.p.Addf(key, "%q is not a forward rule: %s", rule, forwardForm)
		return
	}
	if proto != "" && proto != "tcp" && proto != "udp" {
		b.p.Addf(key, "%q: protocol %q is not tcp or udp: %s", rule, proto, forwardForm)
		return
	}
	host, guest, ok := strings.Cut(rest, "-")
	if !ok {
		b.p.Addf(key, "%q has no '-' between the host side and the guest side: %s", rule, forwardForm)
		return
	}
	haddr, hport, problem := endpoint(host)
	if problem == "" {
		_, _, problem = endpoint(guest)
	}
	if problem != "" {
		b.p.Addf(key, "%q: %s: %s", rule, problem, forwardForm)
		return
	}
	if proto == "" {
		proto = "tcp"
	}
	hp := hostPort{proto: proto, addr: haddr, port: hport, key: key}
	for _, o := range b.hostPorts {
		if o.proto == hp.proto && o.port == hp.port && (o.addr == hp.addr || isWildcard(o.addr) || isWildcard(hp.addr)) {
			b.p.Addf(key, "host %s port %d is already forwarded by %s (line %d): use another host port", proto, hport, o.key, b.p.LineOf(o.key))
			return
		}
	}
	b.hostPorts = append(b.hostPorts, hp)
}

// endpoint parses "[addr]:port" of a forward rule.
func endpoint(s string) (addr string, port int, problem string) {
	a, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Sprintf("%q is not [address]:port", s)
	}
	if a != "" && net.ParseIP(a) == nil {
		return "", 0, fmt.Sprintf("%q is not an IP address", a)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Sprintf("port %q is not a number from 1 to 65535", ps)
	}
	return a, port, ""
}

func isWildcard(addr string) bool {
	return addr == "" || addr == "0.0.0.0" || addr == "::"
}

func (b *builder) group(key string, gi int, fg *fileGroup, groupKeys map[string]string, nets map[string]Network) Group {
	p := b.p
	g := Group{Name: fg.Name}
	nameKey := yamlstrict.ChildKey(key, "name")
	switch {
	case g.Name == "":
		g.Name = "group" + strconv.Itoa(gi+1)
		nameKey = key
	case !namePattern.MatchString(g.Name):
		p.Addf(nameKey, "%q is not a valid group name: %s", g.Name, nameRule)
	}
	if first, dup := groupKeys[g.Name]; dup {
		p.Addf(nameKey, "group name %q is already used by %s (line %d): give each group its own name", g.Name, first, p.LineOf(first))
	} else {
		groupKeys[g.Name] = nameKey
	}
	if len(fg.VMs) == 0 && !p.HasUnder(yamlstrict.ChildKey(key, "vms")) {
		p.Addf(yamlstrict.ChildKey(key, "vms"), "no VMs: list the VMs this group starts, e.g. vms: [{vm: db1}], or remove the group")
	}
	for vi := range fg.VMs {
		g.VMs = append(g.VMs, b.vm(yamlstrict.IndexKey(key+".vms", vi), &fg.VMs[vi], nets))
	}
	return g
}

func (b *builder) vm(key string, fv *fileVM, nets map[string]Network) VM {
	p := b.p
	v := VM{
		VM:            fv.VM,
		RecoveryPoint: fv.RecoveryPoint.rp,
		CPUs:          fv.CPUs,
		MemoryMiB:     fv.MemoryMiB,
		Kernel:        b.path(key+".kernel", fv.Kernel),
		Initrd:        b.path(key+".initrd", fv.Initrd),
		Append:        fv.Append,
		Networks:      fv.Networks,
		OnFailure:     fv.OnFailure,
		key:           key,
	}
	vmKey := yamlstrict.ChildKey(key, "vm")
	switch {
	case v.VM == "":
		p.Addf(vmKey, "missing: set the name of the VM as the repository knows it (drctl snapshots lists them)")
	case !namePattern.MatchString(v.VM):
		p.Addf(vmKey, "%q is not a valid VM name: %s", v.VM, nameRule)
	default:
		if first, dup := b.vmKeys[v.VM]; dup {
			p.Addf(vmKey, "vm %s is already in the plan at %s (line %d): list each VM once", v.VM, first, p.LineOf(first))
		} else {
			b.vmKeys[v.VM] = vmKey
		}
	}
	if v.RecoveryPoint == (RecoveryPoint{}) {
		v.RecoveryPoint.Latest = true
	}
	if v.CPUs < 0 {
		p.Addf(key+".cpus", "%d is negative: give the number of virtual CPUs, or leave cpus: out to keep the recorded number", v.CPUs)
	}
	if v.MemoryMiB < 0 {
		p.Addf(key+".memory_mib", "%d is negative: give the memory in MiB, or leave memory_mib: out to keep the recorded size", v.MemoryMiB)
	}
	if v.Networks == nil {
		v.Networks = map[string]string{}
	}
	for _, src := range yamlstrict.SortedKeys(v.Networks) {
		b.mapNetwork(yamlstrict.ChildKey(key+".networks", src), src, v.Networks[src], nets)
	}
	names := map[string]string{}
	for i := range fv.Health {
		ck := yamlstrict.IndexKey(key+".health", i)
		c := b.check(ck, &fv.Health[i])
		if first, dup := names[c.Name]; dup && c.Kind != "" {
			p.Addf(ck, "check %q is already defined at %s (line %d): remove the duplicate or give it another name:", c.Name, first, p.LineOf(first))
		}
		names[c.Name] = ck
		v.Health = append(v.Health, c)
	}
	switch {
	case v.OnFailure == "":
		v.OnFailure = OnFailureStop
	case !slices.Contains(onFailures, v.OnFailure):
		p.Addf(key+".on_failure", "%q is not a choice: use stop (do not start later groups) or continue (go on without this VM)", v.OnFailure)
	}
	return v
}

func (b *builder) mapNetwork(key, src, target string, nets map[string]Network) {
	p := b.p
	defined := "defined: " + strings.Join(yamlstrict.SortedKeys(nets), ", ")
	n, ok := nets[target]
	switch {
	case src == "":
		p.Addf(key, "the source network name is empty: use the primary's QEMU netdev id of the NIC")
		return
	case target == "":
		p.Addf(key, "missing: name the recovery-site network for NICs on %s (one of networks:, %s)", src, defined)
		return
	case len(nets) == 0:
		p.Addf(key, "network %q is not defined, and the plan has no networks: add %s under networks:, e.g. networks: {%s: {bridge: br0}}", target, target, target)
		return
	case !ok:
		p.Addf(key, "network %q is not defined under networks:%s (%s): use one of those, or add %s under networks:", target, yamlstrict.DidYouMean(target, yamlstrict.SortedKeys(nets)), defined, target)
		return
	}
	// A tap device can be opened by one QEMU only, and each QEMU binds its
	// own user-network forwards, so these networks carry a single NIC.
	single := ""
	switch {
	case n.Kind == NetTap:
		single = "tap device " + n.Tap + " can carry one NIC"
	case n.Kind == NetUser && len(n.Forwards) > 0:
		single = "its host port forwards can serve one NIC"
	}
	if single == "" {
		return
	}
	if first, dup := b.singleUse[target]; dup {
		p.Addf(key, "network %s is already used by %s (line %d), and %s: define another network for this NIC", target, first, p.LineOf(first), single)
		return
	}
	b.singleUse[target] = key
}

func (b *builder) check(key string, fc *fileCheck) HealthCheck {
	p := b.p
	c := HealthCheck{Name: fc.Name, Timeout: fc.Timeout.or(DefaultTimeout), Interval: fc.Interval.or(DefaultInterval)}
	kinds := b.present(key, checkKinds)
	switch len(kinds) {
	case 0:
		if !p.HasUnder(key) {
			p.Addf(key, "no check: set one of serial: REGEXP, tcp: HOST:PORT, guest_agent: true or command: [PROGRAM, ARGS...]")
		}
		return c
	case 1:
	default:
		p.Addf(yamlstrict.ChildKey(key, kinds[1]), "set together with %s in one check: each check tests one thing: make them two list items, - %s: ... and - %s: ...", kinds[0], kinds[0], kinds[1])
	}
	// Values of every kind given are checked, so that splitting a
	// two-kind check does not reveal new problems on the next run.
	for _, k := range kinds {
		b.checkValue(yamlstrict.ChildKey(key, k), k, fc)
	}
	c.Kind = kinds[0]
	switch c.Kind {
	case CheckSerial:
		c.Pattern = fc.Serial
	case CheckTCP:
		c.Addr = fc.TCP
	case CheckCommand:
		c.Command = fc.Command
	}
	if c.Name == "" {
		c.Name = defaultCheckName(c)
	}
	return c
}

// checkValue checks the value of the check kind k, at key.
func (b *builder) checkValue(key, kind string, fc *fileCheck) {
	p := b.p
	switch kind {
	case CheckSerial:
		if fc.Serial == "" {
			p.Addf(key, "missing: give a regular expression to wait for in the serial console log, e.g. serial: \"login:\"")
		} else if _, err := regexp.Compile(fc.Serial); err != nil {
			p.Addf(key, "%q is not a valid regular expression (%v): use Go RE2 syntax, and escape ( ) [ ] { } . * + ? ^ $ | \\ with a backslash to match them literally", fc.Serial, err)
		}
	case CheckTCP:
		if problem := tcpAddrProblem(fc.TCP); problem != "" {
			p.Addf(key, "%s", problem)
		}
	case CheckGuestAgent:
		if !fc.GuestAgent {
			p.Addf(key, "guest_agent: false checks nothing: write guest_agent: true, or remove the check")
		}
	case CheckCommand:
		switch {
		case len(fc.Command) == 0:
			p.Addf(key, "empty: give the program and its arguments, e.g. command: [\"/usr/local/bin/check\", \"--quick\"]")
		case fc.Command[0] == "":
			p.Addf(yamlstrict.IndexKey(key, 0), "the program is empty: give the program to run as the first item")
		}
	}
}

func tcpAddrProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case addr == "":
		return "missing: give the host:port that must accept a connection, e.g. tcp: 127.0.0.1:22"
	case err != nil:
		return fmt.Sprintf("%q is not host:port: write e.g. tcp: 127.0.0.1:22, or [::1]:22 for IPv6", addr)
	case host == "":
		return fmt.Sprintf("%q names no host: write the address to connect to, e.g. 127.0.0.1%s", addr, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 1 to 65535: give the port as a number", port)
	}
	return ""
}

func (b *builder) drillCheck(key string, fc *fileDrillCheck) DrillCheck {
	p := b.p
	vmKey := yamlstrict.ChildKey(key, "vm")
	switch _, ok := b.vmKeys[fc.VM]; {
	case fc.VM == "":
		p.Addf(vmKey, "missing: name the VM of the plan this check runs against")
	case !ok:
		names := yamlstrict.SortedKeys(b.vmKeys)
		p.Addf(vmKey, "vm %q is not in the plan%s (VMs: %s): use one of those", fc.VM, yamlstrict.DidYouMean(fc.VM, names), strings.Join(names, ", "))
	}
	return DrillCheck{VM: fc.VM, HealthCheck: b.check(key, &fc.fileCheck)}
}
