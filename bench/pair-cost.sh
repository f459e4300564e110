#!/usr/bin/env bash
# Instructions per malloc+free pair for sizes 16..4096, counted by callgrind, for each
# allocator built the same way (static for musl). Prints a Markdown table.
# Usage: bench/pair-cost.sh   (after make and make test have built the sysroots)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
musl=${MUSL:-1.2.6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A cc=(
  [ngmalloc]="$root/build/sysroot-musl-$musl/bin/ngmalloc-cc -static"
  [ngmalloc-HARDEN=all]="$root/build/sysroot-musl-$musl-hardened/bin/ngmalloc-cc -static"
  [mallocng-$musl]="$root/build/sysroot-musl-$musl-mallocng/bin/ngmalloc-cc -static"
  [glibc]="gcc"
)
order=(ngmalloc ngmalloc-HARDEN=all mallocng-$musl glibc)
sizes=(16 64 256 1024 4096)
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
printf '| allocator |'; for s in "${sizes[@]}"; do printf ' %s B |' "$s"; done; echo
printf '|---|'; for s in "${sizes[@]}"; do printf -- '---|'; done; echo
for a in "${order[@]}"; do
  ${cc[$a]} -O2 -o "$work/pair" "$root/bench/pair.c"
  printf '| %s |' "$a"
  for s in "${sizes[@]}"; do
    i1=$(count "$work/pair" "$s" 20000)
    i2=$(count "$work/pair" "$s" 40000)
    printf ' %s |' $(((i2 - i1) / 20000))
  done
  echo
done
