#!/usr/bin/env bash
# The drctl demo: replicate a sample disk image, change 1% of its blocks,
# replicate again (incrementally), restore the latest snapshot, and check
# that the restored disk is identical to the image, byte for byte.
#
# Env: DRCTL (default bin/drctl), DEMO_DIR (default .cache/demo, emptied
# first), DEMO_SIZE (default 256M).
set -euo pipefail
cd "$(dirname "$0")/.."

drctl=${DRCTL:-$PWD/bin/drctl}
dir=${DEMO_DIR:-$PWD/.cache/demo}
size=${DEMO_SIZE:-256M}
if [[ ! -x $drctl ]]; then
  echo "demo: $drctl not found: run make build" >&2
  exit 1
fi

rm -rf "$dir"
mkdir -p "$dir"
repo=$dir/repo
img=$dir/demo-disk.img
out=$dir/restored

# A throwaway password for this demo repository only. For real repositories
# use a password file (mode 0600): password_file in drctl.yaml or
# DRCTL_PASSWORD_FILE.
export DRCTL_PASSWORD=drctl-demo-only-password
unset DRCTL_PASSWORD_FILE DRCTL_REPOSITORY
# Ignore any drctl.yaml of the user: the demo passes everything on the
# command line.
export DRCTL_CONFIG=/dev/null

step() { printf '\n==> %s\n' "$*"; }
# show prints a command (to stderr, so that stdout can be captured) and runs it.
show() {
  printf '$ %s\n' "${*/#$PWD\//}" >&2
  "$@"
}

step "build the image tool"
go build -o "$dir/benchtool" ./internal/benchtool
bt=$dir/benchtool

step "1. a $size sample disk image: sparse, with random, text and repeated regions (seed 1)"
show "$bt" mkimage -size "$size" -seed 1 "$img"

step "2. create an encrypted repository"
show "$drctl" init -r "$repo"

step "3. first replication (full)"
show "$drctl" replicate -r "$repo" --vm demo --disk "$img" --json >"$dir/full.json"
full=$("$bt" summary "$dir/full.json")
echo "$full"

step "4. the VM writes: 1% of the 4 KiB blocks change at random places (seed 42)"
changed=$(show "$bt" modify -fraction 0.01 -seed 42 "$img")
echo "$changed"

step "5. second replication (incremental)"
show "$drctl" replicate -r "$repo" --vm demo --disk "$img" --json >"$dir/incr.json"
incr=$("$bt" summary "$dir/incr.json")
echo "$incr"

step "6. the recovery points"
show "$drctl" snapshots -r "$repo"

step "7. restore the latest snapshot"
show "$drctl" restore -r "$repo" --vm demo --snapshot latest --target "$out"

step "8. compare the restored disk with the image"
restored=$out/$(basename "$img")
if ! cmp "$img" "$restored"; then
  echo "demo: FAILED: the restored disk differs from the image" >&2
  exit 1
fi
echo "identical: $restored"

repo_bytes=$(du -sb "$repo" | cut -f1)
cat <<EOF

==> summary
image:              $size, $(du -h "$img" | cut -f1) allocated
full replication:   $full
1% changed:         ${changed#*modified }
incremental:        $incr
repository on disk: $((repo_bytes / 1024 / 1024)) MiB for 2 snapshots
restore:            identical to the image (cmp)
files:              $dir
EOF
