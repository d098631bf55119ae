// Package plan parses and validates recovery plans: YAML files that say
// how to bring a set of replicated VMs up at the recovery site, for
// "drctl failover --plan FILE" when the primary site is lost and for DR
// drills. Parse does no I/O and fills every default; CheckHost then checks
// the host (bridges, taps, kernel files) just before the plan is run.
//
// # Format
//
// A plan is one YAML document. It is decoded strictly: unknown keys,
// duplicate keys, values of the wrong type and invalid values are errors
// that name the file, line, key path (e.g. groups[0].vms[1].health[0].serial)
// and the fix; up to 20 problems are reported at once. Anchors, aliases and
// "<<" merge keys work. Names (plan, site, group, network, VM) use letters,
// digits, '.', '_' and '-', starting with a letter or digit.
//
// Top level:
//
//	name       plan name; default: the file's base name without extension.
//	           Required when the plan is parsed without a file name.
//	site       this recovery site's name, recorded as the owner of VMs it
//	           takes over; default "" (the caller uses the host name).
//	state_dir  where replica disks, sockets and logs live; relative to the
//	           plan file's directory; default "" (the caller's default).
//	lease      a primary heartbeat younger than this blocks failover;
//	           a Go duration > 0 (30s, 5m, 1h30m); default 5m.
//	accel      auto (KVM when usable, else TCG), kvm or tcg; default auto.
//	networks   recovery-site networks, by name (see below).
//	groups     the VMs, as a list of groups in boot order (required).
//	drill      settings only DR drills use (optional).
//
// Each entry of networks: is exactly one of
//
//	bridge: BR        attach to the existing Linux bridge BR
//	tap: TAP          use the existing tap device TAP (one NIC only)
//	user: {...}       QEMU user networking; "user: {}" and "user: true"
//	                  mean no options. Options: forwards, a list of QEMU
//	                  hostfwd rules [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
//	                  (addresses are IPs; empty means any), and restrict
//	                  (true: the guest cannot reach out; default false).
//	                  A user network with forwards carries one NIC only, and
//	                  a host port may be forwarded only once in the plan.
//	none: true        the NIC is present but linked to nothing
//
// Groups boot in order: every VM of a group must be healthy (or have
// failed with on_failure: continue) before the next group starts. A group
// has a name (default "group1", "group2" ... by position; names unique)
// and vms:, a non-empty list of VM entries:
//
//	vm              the VM's name in the repository (required; each VM
//	                appears once in the whole plan).
//	recovery_point  which snapshot to boot: latest (default); a snapshot
//	                id or a unique id prefix of at least 4 hex digits
//	                (stored lower-case); or {at: TIME}, the newest snapshot
//	                at or before TIME, an RFC 3339 time with zone such as
//	                2026-11-25T10:00:00Z.
//	cpus, memory_mib  override the recorded hardware; 0 or absent keeps it.
//	kernel, initrd, append  override the recorded direct-boot (-kernel)
//	                settings; "" or absent keeps them. kernel and initrd
//	                are paths relative to the plan's directory; CheckHost
//	                checks that they exist.
//	networks        maps a source network (the primary's QEMU netdev id,
//	                recorded per NIC in the snapshot) to a network defined
//	                under networks:. Parse cannot know the VM's NICs; the
//	                caller uses Plan.NetworkFor, which reports a NIC whose
//	                source network is not mapped.
//	health          a list of checks that the VM is up (see below); with
//	                none, the VM counts as healthy once QEMU runs.
//	on_failure      stop (default): if the VM does not become healthy, no
//	                later group starts; continue: go on without it.
//
// A health check has exactly one of
//
//	serial: REGEXP        a Go RE2 regular expression that must match the
//	                      serial console log (everything logged since boot)
//	tcp: HOST:PORT        must accept a TCP connection; numeric port
//	guest_agent: true     the QEMU guest agent answers guest-ping
//	command: [ARGV...]    a program run on the recovery host (not in the
//	                      guest) that must exit 0; a list, never split by a
//	                      shell (use ["sh", "-c", "..."] for a shell line).
//	                      It gets DRCTL_VM (the VM name) and
//	                      DRCTL_SERIAL_LOG (path of the serial log) in its
//	                      environment.
//
// and optionally name (default derived from the check: `serial /login:/`,
// `tcp 127.0.0.1:22`, `guest_agent`, `command check --quick`; unique per
// VM), timeout (default 5m) and interval (the retry period, default 2s),
// both Go durations > 0. A VM's checks run in the listed order; each is
// retried every interval until it passes or its timeout, counted from when
// that check starts, runs out. The VM is healthy when all have passed.
//
// drill: has one key, checks: a list of health checks, each with a vm:
// naming a VM of the plan, that run only in DR drills (when is up to the
// drill command).
//
// See example.yaml next to this file for a complete, commented plan.
package plan
