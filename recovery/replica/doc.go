// Package replica starts, finds and stops replica VMs at the recovery
// site: one QEMU process per VM, booted from the hardware spec stored with
// a recovery point, on disks restored from the repository (usually through
// a qcow2 overlay, see CreateOverlay, so the restored images stay pristine
// and a drill can be thrown away).
//
// # Lifetime
//
// A replica outlives the drctl process that started it: failover starts
// the replicas and exits. QEMU is started in a session of its own (setsid)
// and without a parent-death signal, so neither drctl's exit nor a
// terminal's SIGHUP or Ctrl-C reaches it. It is not started with
// -daemonize: a daemonized QEMU points its stderr at /dev/null once it is
// up (measured on QEMU 7.2), and qemu.log should keep what QEMU says for
// the replica's whole life ("terminating on signal 15 from pid N", block
// I/O errors), which is what one reads after a failed failover. The cost
// is that the starting process is QEMU's parent until it exits; it reaps
// QEMU in the background.
//
// A service manager that kills a whole cgroup (systemd's default
// KillMode=control-group) kills the replicas with drctl: run failover in a
// scope of its own (systemd-run --scope) or with KillMode=process.
//
// # State directory
//
// Each VM has <site>/<vm>/ with:
//
//	qemu.pid      QEMU's -pidfile. QEMU holds a POSIX write lock on it while
//	              it runs, which is how drctl tells a running replica from a
//	              stale directory (not by the pid, which the kernel reuses),
//	              and what stops a second QEMU with the same pidfile.
//	qmp.sock      QMP monitor (one client at a time)
//	qga.sock      guest agent channel (virtio-serial org.qemu.guest_agent.0)
//	serial.log    the serial console (ttyS0) of the current boot
//	qemu.log      QEMU's stderr and stdout of the current run
//	replica.json  what was started: spec, command line, pid, start time
//	start.lock    serialises Start of this VM between drctl processes
//	*.old         serial.log and qemu.log of the run before
//	OVMF_VARS.fd  the UEFI variable store of a UEFI replica
//
// Unix socket paths are limited to 107 bytes, so the site directory must
// be short enough for <site>/<vm>/qmp.sock; Start refuses a longer one.
//
// # Networks
//
// NICs keep the model and MAC recorded at the primary (a new MAC makes
// many guests rename the interface and lose its configuration). The
// recovery plan maps each source network to an attachment here: QEMU user
// networking (with host forwards), a tap device, a bridge (through
// qemu-bridge-helper, which must allow it), or "none": the NIC is
// present, so the guest's devices do not change, but its netdev is a
// port on a hub of its own and its link is set down through QMP before
// Start returns; QEMU logs "hub N is not connected to host network" for
// it, which is the point.
package replica
