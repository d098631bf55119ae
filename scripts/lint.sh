#!/usr/bin/env bash
# gofmt, go vet, and staticcheck when it is installed in .tools/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
status=0

echo "==> gofmt -l"
if ! mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.go' 2>/dev/null) || ((${#files[@]} == 0)); then
  mapfile -t files < <(find . -name '*.go' -not -path './.tools/*' -not -path './.cache/*')
fi
unformatted=""
if ((${#files[@]} > 0)); then
  unformatted=$(gofmt -l "${files[@]}")
fi
if [[ -n $unformatted ]]; then
  echo "$unformatted"
  echo "lint: the files above need gofmt -w"
  status=1
fi

echo "==> go vet ./..."
$GO vet ./... || status=1

staticcheck=.tools/bin/staticcheck
if [[ -x $staticcheck ]]; then
  echo "==> staticcheck ./..."
  $staticcheck ./... || status=1
else
  echo "==> staticcheck: not installed (make tools installs it): skipped"
fi

if ((status != 0)); then
  echo "lint: FAILED"
  exit 1
fi
echo "lint: ok"
