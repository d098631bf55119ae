#!/usr/bin/env bash
# go vet, then go test of every package, then a summary.
# Env: GO, TEST_TIMEOUT (default 20m), TEST_FLAGS (extra go test flags),
# RACE_PKGS (packages also tested with -race; "" to skip).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
timeout=${TEST_TIMEOUT:-20m}
read -r -a extra <<<"${TEST_FLAGS:-}"
log=.cache/test/go-test.log
mkdir -p "$(dirname "$log")"
start=$SECONDS

echo "==> go vet ./..."
if ! $GO vet ./...; then
  echo "test: FAILED: go vet found the problems above (took $((SECONDS - start))s)"
  exit 1
fi
echo "    ok ($((SECONDS - start))s)"

echo "==> go test -count=1 -timeout $timeout ${TEST_FLAGS:+$TEST_FLAGS }./..."
test_start=$SECONDS
set +e
$GO test -count=1 -timeout "$timeout" "${extra[@]}" ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

passed=$(grep -cE '^ok[[:space:]]' "$log" || true)
failed=$(grep -cE '^FAIL[[:space:]]+[^[:space:]]' "$log" || true)
untested=$(grep -cE '\[no test files\]$' "$log" || true)
echo
echo "==> summary: go test took $((SECONDS - test_start))s, vet+test $((SECONDS - start))s; full output in $log"
if ((failed > 0)); then
  echo "failed packages:"
  grep -E '^FAIL[[:space:]]+[^[:space:]]' "$log" | sed 's/^/    /'
  if grep -qE '^[[:space:]]*--- FAIL: ' "$log"; then
    echo "failed tests:"
    grep -E '^[[:space:]]*--- FAIL: ' "$log" | sed -E 's/^[[:space:]]*/    /'
  fi
fi
if ((status != 0 && failed == 0)); then
  echo "go test exited with status $status (see the output above)"
  failed=1
fi

# The packages where goroutines share state (the agent's jobs, prune racing
# writers, the targets' retries and locks) run once more under the race
# detector: a data race there is a lost snapshot waiting to happen.
read -r -a race_pkgs <<<"${RACE_PKGS-./agent ./repo ./targets/...}"
if ((${#race_pkgs[@]} > 0)) && [[ $($GO env CGO_ENABLED) != 1 ]]; then
  echo
  echo "==> race pass skipped: go test -race needs cgo and a C compiler (make deps installs gcc)"
elif ((${#race_pkgs[@]} > 0)); then
  race_log=.cache/test/go-test-race.log
  echo
  echo "==> go test -race -count=1 ${race_pkgs[*]}"
  race_start=$SECONDS
  set +e
  $GO test -race -count=1 -timeout "$timeout" "${race_pkgs[@]}" 2>&1 | tee "$race_log"
  race_status=${PIPESTATUS[0]}
  set -e
  echo "    took $((SECONDS - race_start))s"
  if ((race_status != 0)); then
    echo "race pass: FAILED:"
    grep -E '^FAIL[[:space:]]+[^[:space:]]|^[[:space:]]*--- FAIL: |WARNING: DATA RACE' "$race_log" | sed 's/^/    /' || true
    failed=$((failed + 1))
    status=$race_status
  fi
fi
echo "($untested packages have no test files)"
echo "packages: $passed passed, $failed failed"
exit "$status"
