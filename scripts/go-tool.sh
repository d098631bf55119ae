#!/usr/bin/env bash
# Installs a Go command at a pinned version into a project-local bin dir,
# unless the binary there was already built from that module version.
#
# Usage: scripts/go-tool.sh BINDIR PACKAGE VERSION
set -euo pipefail
if (($# != 3)); then
  echo "usage: $0 BINDIR PACKAGE VERSION" >&2
  exit 2
fi
bindir=$1 pkg=$2 version=$3
name=${pkg##*/}
bin=$bindir/$name

if [[ -x $bin ]]; then
  have=$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')
  if [[ $have == "$version" ]]; then
    echo "tools: $name $version present"
    exit 0
  fi
  echo "tools: $bin is ${have:-of unknown version}, want $version"
fi

echo "tools: installing $name $version (go install; takes minutes for a large module on a cold cache)"
mkdir -p "$bindir"
start=$SECONDS
GOBIN=$bindir go install "$pkg@$version"
echo "tools: installed $name $version in $((SECONDS - start))s"
