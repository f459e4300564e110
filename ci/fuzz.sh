#!/usr/bin/env bash
# Each fuzz target (fuzz/README.md) for SECONDS, on a copy of the committed seed corpus, so
# the repository keeps its small seed set. A finding fails the run and is kept in
# fuzz/artifacts/TARGET/ for replay.
# Usage: fuzz.sh SECONDS
set -u
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. ../ci/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-../target}/fuzz
for t in ops headers; do
  cargo +nightly fuzz build -O "$t" >"$work/build.log" 2>&1 || { tail -20 "$work/build.log"; result 1 "fuzz $t: build"; continue; }
  mkdir -p "$work/$t"
  cp corpus/"$t"/* "$work/$t/"
  cargo +nightly fuzz run -O "$t" "$work/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 \
    -print_final_stats=1 >"$work/$t.log" 2>&1
  r=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
  [ $r = 0 ] || tail -40 "$work/$t.log"
  result $r "fuzz $t: ${secs} s, ${runs:-?} inputs, $cov"
done
summary "fuzz"
