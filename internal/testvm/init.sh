#!/bin/sh
# /init of the drctl test guest, run by busybox ash as PID 1. Built into
# the initramfs by internal/testvm (doc.go there describes the protocol).
# The kernel command line picks the workload:
#   drtest.mode=seq|scatter|probe|idle|verify|halt   (default idle)
#   drtest.disks=N     data disks to wait for (the launcher sets it)
#   drtest.net=1       configure eth0 for QEMU user networking
#   drtest.start=N     seq: number of the first record (default 0)
#   drtest.blocks=N    seq, scatter: use only the first N 4 KiB blocks
#   drtest.rate=N      scatter: writes per second, 0 = as fast as it can
#   drtest.offset=N    verify, idle: byte offset of the 64 bytes printed
#   drtest.window=N    probe: report every N milliseconds (default 500)
#   drtest.connect=H:P[,H:P...]  after network set-up, try a TCP connection
#                      to each and print "DRTEST: CONNECT to=H:P result=ok|failed"
# Lines for the host go to the serial console and start with "DRTEST: ".
# Forks are slow under TCG, so the loops use shell builtins where they
# can. With DRTEST_SOURCE_ONLY=1 the script only defines its functions,
# so the package's tests can run them on the host.

fail() {
	echo "DRTEST: ERROR $*"
	sync
	poweroff -f
	exit 1
}

# number NAME VALUE: NAME=VALUE, failing unless VALUE is a decimal number.
number() {
	case $2 in
	'' | *[!0-9]*) fail "bad number for $1: $2" ;;
	esac
	eval "$1=\$2"
}

parse_cmdline() {
	mode=idle ndisks=0 net=0 start=0 blocks=0 rate=0 offset=0 window=500 connect=
	read -r cmdline </proc/cmdline
	for arg in $cmdline; do
		case $arg in
		drtest.mode=*) mode=${arg#*=} ;;
		drtest.disks=*) number ndisks "${arg#*=}" ;;
		drtest.net=*) number net "${arg#*=}" ;;
		drtest.start=*) number start "${arg#*=}" ;;
		drtest.blocks=*) number blocks "${arg#*=}" ;;
		drtest.rate=*) number rate "${arg#*=}" ;;
		drtest.offset=*) number offset "${arg#*=}" ;;
		drtest.window=*) number window "${arg#*=}" ;;
		drtest.connect=*) connect=${arg#*=} ;;
		esac
	done
}

# Dependencies first: busybox insmod does not resolve them.
load_modules() {
	while read -r m; do
		insmod "/lib/modules/$m.ko" || fail "insmod $m"
	done </lib/modules/order
}

# virtio-blk disks appear asynchronously: wait for the sysfs entry and
# the device node of every data disk.
wait_disks() {
	tries=0
	while :; do
		n=0
		for d in /sys/block/vd*; do
			[ -b "/dev/${d##*/}" ] && n=$((n + 1))
		done
		[ "$n" -ge "$ndisks" ] && return
		tries=$((tries + 1))
		[ "$tries" -gt 600 ] && fail "found $n of $ndisks disks"
		sleep 0.05
	done
}

# Data disk i (disk<i>, size<i> in sectors) is the one whose virtio serial
# is drdisk<i>, whatever name the kernel gave it; disks without such a
# serial fill the gaps in name order. Sets disks to the list.
map_disks() {
	i=0
	for d in /sys/block/vd*; do
		[ -e "$d" ] || continue
		name=${d##*/} serial=
		[ -r "$d/serial" ] && read -r serial <"$d/serial"
		read -r sectors <"$d/size"
		case $serial in
		drdisk[0-9] | drdisk[0-9][0-9]) eval "disk${serial#drdisk}=$name size${serial#drdisk}=$sectors" ;;
		*)
			eval "other$i=$name othersize$i=$sectors"
			i=$((i + 1))
			;;
		esac
		echo "DRTEST: DISK $name serial=$serial bytes=$((sectors * 512))"
	done
	j=0 disks=
	i=0
	while [ "$i" -lt "$ndisks" ]; do
		eval "d=\$disk$i"
		if [ -z "$d" ]; then
			eval "disk$i=\$other$j size$i=\$othersize$j d=\$other$j"
			j=$((j + 1))
		fi
		[ -n "$d" ] || fail "no data disk $i"
		disks="$disks $d"
		i=$((i + 1))
	done
	disks=${disks# }
}

setup_net() {
	ip link set lo up
	ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up &&
		ip route add default via 10.0.2.2 || fail "network set-up"
	echo "DRTEST: NET eth0 10.0.2.15"
}

# try_connect reports, for each host:port of drtest.connect, whether a TCP
# connection could be made (isolation tests of DR drills).
try_connect() {
	for hp in $(echo "$connect" | tr , ' '); do
		if nc -w 3 "${hp%:*}" "${hp##*:}" </dev/null >/dev/null 2>&1; then
			r=ok
		else
			r=failed
		fi
		echo "DRTEST: CONNECT to=$hp result=$r"
	done
}

# record N DISK BLOCK RING prints the 4 KiB block of seq record N for disk
# DISK (0 = A, 1 = B) at block BLOCK of a ring of RING blocks: a 511-byte
# header line and a newline, repeated in each of the 8 sectors so a torn
# write shows. The check word is FNV-1a over the four numbers as 32-bit
# words. seq.go holds the Go side of this format; keep them in step.
seqfmt='DRSEQ n=%010d disk=%s block=%010d ring=%010d check=%08x%438s\n'
record() {
	c=2166136261
	for v in "$1" "$2" "$3" "$4"; do
		c=$((((c ^ v) * 16777619) & 0xFFFFFFFF))
	done
	if [ "$2" = 0 ]; then l=A; else l=B; fi
	set -- "$1" "$l" "$3" "$4" "$c" ""
	printf "$seqfmt" "$@" "$@" "$@" "$@" "$@" "$@" "$@" "$@"
}

# put FILE DEV BLOCK writes one 4 KiB block with O_DIRECT, so it has
# reached the virtual disk when dd returns.
put() {
	dd if="$1" of="$2" bs=4096 seek="$3" count=1 oflag=direct conv=notrunc 2>/dev/null
}

# ring SECTORS... sets r to the smallest disk's size in 4 KiB blocks,
# capped by drtest.blocks.
ring() {
	r=
	for s in "$@"; do
		s=$((s / 8))
		if [ -z "$r" ] || [ "$s" -lt "$r" ]; then r=$s; fi
	done
	if [ "$blocks" -gt 0 ] && [ "$blocks" -lt "$r" ]; then r=$blocks; fi
	[ "$r" -gt 0 ] || fail "no room on the data disks"
}

# Record n goes to block n mod r of disk A, then of disk B; "SEQ n" is
# printed once record n is on both.
seq_mode() {
	[ "$ndisks" -ge 2 ] || fail "seq needs two data disks"
	ring "$size0" "$size1"
	echo "DRTEST: SEQ-START start=$start ring=$r A=$disk0 B=$disk1"
	n=$start
	while :; do
		b=$((n % r))
		record "$n" 0 "$b" "$r" >/tmp/a
		put /tmp/a "/dev/$disk0" "$b" || fail "seq: write record $n to $disk0"
		record "$n" 1 "$b" "$r" >/tmp/b
		put /tmp/b "/dev/$disk1" "$b" || fail "seq: write record $n to $disk1"
		[ $((n % 100)) = 0 ] && echo "DRTEST: SEQ $n"
		n=$((n + 1))
	done
}

# now sets t to the uptime in centiseconds, without forking.
now() {
	read -r up _ </proc/uptime
	t=$((${up%.*} * 100 + 1${up#*.} - 100))
}

scatter_mode() {
	[ "$ndisks" -ge 1 ] || fail "scatter needs a data disk"
	sizes= i=0
	while [ "$i" -lt "$ndisks" ]; do
		eval "sizes=\"\$sizes \$size$i\""
		i=$((i + 1))
	done
	ring $sizes
	echo "DRTEST: SCATTER-START blocks=$r rate=$rate disks=$disks"
	now
	t0=$t i=0
	while :; do
		eval "d=\$disk$((i % ndisks))"
		b=$(((RANDOM * 32768 + RANDOM) % r))
		h="DRSCATTER i=$i disk=$d block=$b"
		printf '%-511s\n' "$h" "$h" "$h" "$h" "$h" "$h" "$h" "$h" >/tmp/s
		put /tmp/s "/dev/$d" "$b" || fail "scatter: write block $b of $d"
		i=$((i + 1))
		[ $((i % 100)) = 0 ] && echo "DRTEST: SCATTER $i"
		if [ "$rate" -gt 0 ]; then
			now
			while [ "$t" -lt $((t0 + i * 100 / rate)) ]; do
				sleep 0.01
				now
			done
		fi
	done
}

# clock sets ns to the kernel's monotonic clock in nanoseconds, without
# forking (/proc/uptime has only centiseconds).
clock() {
	{
		read -r _
		read -r _
		read -r _ _ ns _
	} </proc/timer_list
}

# probe_mode times one 4 KiB O_DIRECT write after another to the last
# block of data disk 0 and reports, every drtest.window ms, the number of
# writes and the longest one: a snapshot that stalls guest I/O shows as a
# window whose max_us stands out.
probe_mode() {
	[ "$ndisks" -ge 1 ] || fail "probe needs a data disk"
	b=$((size0 / 8 - 1))
	printf '%-4095s\n' "DRPROBE" >/tmp/p
	echo "DRTEST: PROBE-START disk=$disk0 block=$b window_ms=$window"
	clock
	w0=$ns n=0 max=0
	while :; do
		clock
		t0=$ns
		put /tmp/p "/dev/$disk0" "$b" || fail "probe: write block $b of $disk0"
		clock
		d=$(((ns - t0) / 1000))
		[ "$d" -gt "$max" ] && max=$d
		n=$((n + 1))
		if [ $((ns - w0)) -ge $((window * 1000000)) ]; then
			echo "DRTEST: PROBE t_ms=$((ns / 1000000)) writes=$n max_us=$max"
			w0=$ns n=0 max=0
		fi
	done
}

# print_data prints the 64 bytes at drtest.offset of every data disk.
print_data() {
	i=0
	for d in $disks; do
		hex=$(dd if="/dev/$d" bs=64 skip=$((offset / 64)) count=1 2>/dev/null | hexdump -v -e '64/1 "%02x"')
		echo "DRTEST: DATA disk=$i dev=$d offset=$offset hex=$hex"
		i=$((i + 1))
	done
}

verify_mode() {
	print_data
	echo "DRTEST: VERIFIED"
	sync
	poweroff -f
}

main() {
	export PATH=/bin
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	parse_cmdline
	load_modules
	wait_disks
	map_disks
	[ "$net" = 1 ] && setup_net
	[ -n "$connect" ] && try_connect
	read -r up _ </proc/uptime
	echo "DRTEST: BOOTED uptime=$up mode=$mode disks=$disks"
	case $mode in
	seq) seq_mode ;;
	scatter) scatter_mode ;;
	probe) probe_mode ;;
	verify) verify_mode ;;
	halt)
		echo "DRTEST: HALT"
		sync
		poweroff -f
		;;
	idle)
		print_data
		echo "DRTEST: IDLE"
		while :; do sleep 3600; done
		;;
	*) fail "unknown drtest.mode=$mode" ;;
	esac
}

[ "$DRTEST_SOURCE_ONLY" = 1 ] || main
