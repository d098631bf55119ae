#!/usr/bin/env bash
# Installs the Debian packages that drctl's tests, demo and benchmark need,
# when they are missing. Quick and silent when everything is present.
#
# Usage: scripts/install-deps.sh [PACKAGE[:COMMAND] ...]   (extra packages)
set -euo pipefail

# PACKAGE:COMMAND — the package is needed when COMMAND is not found.
deps=(
  "qemu-utils:qemu-img"    # qemu-img: qcow2 restore tests, qemu-nbd for NBD client tests
  "qemu-system-x86:qemu-system-x86_64"  # live-VM tests: a real QEMU with QMP and an NBD server
  "busybox-static:"        # the test guest's userland (initramfs)
  "linux-image-amd64:"     # the test guest's kernel (/boot/vmlinuz-*)
  "xz-utils:xz"            # unpacks that kernel (xz with the x86 BCJ filter)
  "e2fsprogs:mkfs.ext4"    # mkfs.ext4 -d: VM-like ext4 images for the benchmark
  "time:/usr/bin/time"     # /usr/bin/time -v: max RSS when measuring by hand
  "chromium:chromium"      # headless rendering check of the drill report
  "gcc:gcc"                # go test -race needs cgo, so a C compiler…
  "libc6-dev:"             # …and the C library headers (only recommended by gcc)
  "$@"
)

have() {
  local pkg=$1 cmd=$2
  if [[ -n $cmd ]] && { command -v "$cmd" || [[ -x /usr/sbin/$cmd ]] || [[ -x /sbin/$cmd ]]; } >/dev/null 2>&1; then
    return 0
  fi
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]]
}

missing=()
for d in "${deps[@]}"; do
  pkg=${d%%:*}
  cmd=${d#*:}
  [[ $cmd == "$d" ]] && cmd=$pkg
  have "$pkg" "$cmd" || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
  echo "deps: all present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${missing[*]}, and this is not a Debian-like system: install them with your package manager" >&2
  exit 1
fi
if [[ $(id -u) == 0 ]]; then
  as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
  echo "deps: missing ${missing[*]}: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
"${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
"${as_root[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${missing[*]}"
