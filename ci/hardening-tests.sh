#!/usr/bin/env bash
# Guard regions as programs see them, against the standalone library (linked in) and the
# static musl sysroot: c-tests/guards.c both ways (MADV_GUARD_INSTALL, and the PROT_NONE
# fallback forced by mlockall) and the mlockall program of the hardening issue.
# With ARCH another than the host's, only the musl sysroot's programs, under qemu-user.
# Usage: [ARCH=aarch64] hardening-tests.sh BUILD-DIR NGMALLOC-SYSROOT
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "$1")
S=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"
runs() { local out; out=$("${RUN[@]}" "$@" 2>&1); local r=$?; echo "$out" | grep -vE '^ok - ' >&2; return $r; }
kinds=$([ -n "$CROSS" ] || echo standalone)
for kind in $kinds musl-static; do
  for prog in guards mlockall; do
    if [ $kind = standalone ]; then
      gcc -O2 -o "$work/$prog" "$root/c-tests/$prog.c" "$build/libngmalloc.a" -pthread
    else
      "$S/bin/ngmalloc-cc" -O2 -static -o "$work/$prog" "$root/c-tests/$prog.c"
    fi
  done
  runs "$work/guards"
  result $? "$kind: guards (madvise: few VMAs; else the fallback, detected), faults both sides, churn settles"
  runs "$work/guards" fallback
  result $? "$kind: PROT_NONE fallback after mlockall (used, faults both sides)"
  [ "$("${RUN[@]}" "$work/mlockall")" = ok ]
  result $? "$kind: malloc after mlockall(MCL_FUTURE) prints ok (errno untouched)"
  [ "$("${RUN[@]}" "$work/mlockall" onfault)" = ok ]
  result $? "$kind: malloc after mlockall(MCL_FUTURE|MCL_ONFAULT) prints ok"
done
summary "hardening"
