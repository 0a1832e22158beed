#!/usr/bin/env bash
# Runs every fuzz target of the module (found with go test -list, so a new
# target is fuzzed without editing this) for FUZZTIME each: go test -fuzz
# takes one target per invocation.
#
# Go 1.26's coordinator can fail a clean run with "context deadline
# exceeded" when -fuzztime ends while a worker is busy (golang/go#75804):
# a run is a failure only when it wrote a new reproducer under
# testdata/fuzz/<target>, or failed for another reason.
set -uo pipefail

fuzztime=${1:-30s}
minimize=${FUZZMINIMIZETIME:-5s}
go=${GO:-go}
failed=() flaked=()

targets=$($go test -list '^Fuzz' ./... | awk '/^Fuzz/ { names = names " " $1 } /^ok / { if (names != "") print $2 names; names = "" }')
while read -r pkg names; do
  [ -n "$pkg" ] || continue
  dir=$($go list -f '{{.Dir}}' "$pkg")
  for name in $names; do
    corpus="$dir/testdata/fuzz/$name"
    before=$(ls "$corpus" 2>/dev/null | sort)
    echo "== $pkg $name ($fuzztime)"
    log=$(mktemp)
    $go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" >"$log" 2>&1
    code=$?
    after=$(ls "$corpus" 2>/dev/null | sort)
    tail -n 3 "$log"
    if [ $code -ne 0 ]; then
      if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$log" && ! grep -q -- '--- FAIL: .*/' "$log"; then
        flaked+=("$name")
        echo "   (no reproducer written: the coordinator's deadline race, golang/go#75804, not a failure)"
      else
        failed+=("$name")
        cat "$log"
        comm -13 <(echo "$before") <(echo "$after") | sed "s|^|   new reproducer: $corpus/|"
      fi
    fi
    rm -f "$log"
  done
done <<<"$targets"

echo "fuzz: ${#failed[@]} failed, ${#flaked[@]} stopped by the deadline race${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
