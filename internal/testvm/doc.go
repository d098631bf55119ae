// Package testvm runs a tiny Linux guest under QEMU for drctl's live-VM
// tests (and failover and drill tests): a real kernel with virtio disks
// and a busybox /init whose workload writes data whose consistency can be
// checked after snapshots, replication and restores.
//
// # Guest
//
// Build makes the guest from the host's packages, once, into a cache
// (DefaultCacheDir, keyed by content): the newest /boot/vmlinuz-* with
// its uncompressed vmlinux extracted (QEMU boots it through the PVH entry
// in about 4 s under TCG, against 9 s for the bzImage, whose xz
// decompression dominates), and a gzip newc initramfs with a static
// busybox, the virtio_pci, virtio_blk and virtio_net modules with their
// dependencies, and init.sh as /init. Extraction needs no tools: xz (what
// Debian uses), gzip and zstd are decoded in Go; a kernel that cannot be
// extracted is booted as a bzImage (Artifacts.PVH false).
//
// # Launcher
//
// Start (for tests) and Launch run
//
//	qemu-system-x86_64 -accel tcg -M pc -cpu max -smp 1 -m 256 -nodefaults ...
//
// with the serial console in a file (WaitSerial, WaitBooted, WaitSeq,
// WaitVerified), two QMP sockets, one for drctl (QMPSocket) and one for
// the test itself (QMP, Shutdown), the data disks and optionally user
// networking. KVM is used only when a probe boot under KVM succeeds:
// on nested hosts /dev/kvm can exist while the guest never boots. QEMU
// is killed when the test ends, or with the test process (Pdeathsig).
//
// Environment: DRCTL_TESTVM_ACCEL=tcg|kvm|auto forces the accelerator;
// DRCTL_TESTVM_CACHE moves the cache.
//
// # Disks
//
// Data disk i of Options.Disks is attached as QEMU node file<i>
// (protocol) under node disk<i> (format, what drctl's QMP commands name),
// device vdisk<i> (virtio-blk-pci; qemu-io's QOM path is
// /machine/peripheral/vdisk<i>/virtio-backend), with virtio serial
// drdisk<i>. The guest names disks by that serial, not by the kernel's
// vda, vdb, ...: "disk A" of the seq workload is data disk 0 and "disk B"
// is data disk 1 even if probing order differs, and a restored replica
// attached with the same order keeps its roles.
//
// # Workloads
//
// Options.Mode selects what /init does after printing
// "DRTEST: BOOTED ..." on the console:
//
//   - seq: writes numbered 4 KiB records to disks A and B (see CheckSeq
//     for the format and the invariant), printing "DRTEST: SEQ n" each
//     time record n, a multiple of 100, is on both disks.
//   - scatter: writes 4 KiB blocks at random offsets over all data disks
//     at Options.ScatterRate per second, printing "DRTEST: SCATTER i"
//     every 100 writes (for benchmarks).
//   - probe: times 4 KiB O_DIRECT writes, one after another, to the last
//     block of data disk 0 and prints "DRTEST: PROBE t_ms=T writes=N
//     max_us=M" every Options.ProbeWindowMs (ProbeWindows parses them):
//     the guest's view of I/O stalls, e.g. during a snapshot.
//   - verify: prints the 64 bytes at Options.VerifyOffset of every data
//     disk ("DRTEST: DATA disk=i dev=vdX offset=o hex=..."), then
//     "DRTEST: VERIFIED", and powers off (WaitVerified).
//   - idle: prints the DATA lines of verify, then "DRTEST: IDLE", and
//     does nothing more, e.g. while a test drives QMP or a replica waits
//     for its health check.
//   - halt: powers off at once.
//
// The guest reports a failure as "DRTEST: ERROR ..." and powers off;
// the Wait methods return at once with the serial log. There is no guest
// agent: the host learns everything from the serial console and the disks.
//
// # Pitfalls
//
//   - Read images only after Shutdown (QMP quit): Kill is a crash, and
//     qcow2 metadata QEMU had not flushed is lost with it.
//   - Under TCG every fork in the guest costs milliseconds: seq writes
//     about 60 records a second, a boot takes 4 s (10 s on a loaded
//     host), so give waits generous timeouts.
//   - To continue a sequence on restored disks, set SeqStart to B's last
//     record plus one; starting anywhere else breaks the prefix.
//   - The KVM probe costs up to 6 s once per kernel, QEMU and host; its
//     verdict is cached as kvm-probe-* in the cache directory.
package testvm
