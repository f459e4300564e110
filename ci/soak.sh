#!/usr/bin/env bash
# The soak test (soak/README.md): soak/soak.c's churn with a stable live set, on ngmalloc in
# musl (a static program from the sysroot) and on the standalone library linked into a
# glibc program. Each must keep every block's pattern and its RSS must stop growing. Then
# a short run that leaks on purpose must fail the RSS verdict, or a pass would prove nothing.
# Usage: soak.sh BUILD-DIR NGMALLOC-SYSROOT SECONDS   (SOAK_THREADS: worker threads, 4)
# Prints ok/not ok lines, each run's figures as "#" lines, and "soak: N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "$1")
S=$(realpath "$2")
total=${3:-600}
threads=${SOAK_THREADS:-4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"

# The leak check needs only a few seconds (it leaks fast); the two builds share the rest.
# soak.c wants at least 4 s a run.
leak=$((total >= 30 ? 6 : 4))
each=$(((total - leak) / 2))
[ "$each" -ge 4 ] || each=4

# soak NAME SECONDS PROGRAM: run it, show its figures, and set $verdict (its last
# "ok"/"not ok" line without the prefix, or how it died) and $rc.
soak() {
  local out
  out=$(cd "$work" && "${@:3}" "$2" "$threads" 2>&1)
  rc=$?
  echo "$out" | grep '^#' | sed "s/^# /# $1: /"
  verdict=$(echo "$out" | sed -n 's/^\(not \)\{0,1\}ok - //p' | tail -n 1)
  [ $rc -le 128 ] || verdict="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))${verdict:+; $verdict}"
  [ -n "$verdict" ] || verdict="no verdict (exit $rc): $(echo "$out" | tail -n 1)"
  # a run on the wrong allocator would prove nothing about ngmalloc
  if ! echo "$out" | grep -q '^# soak: .*allocator ngmalloc'; then
    verdict="not served by ngmalloc; $verdict"
    rc=3
  fi
}

"$S/bin/ngmalloc-cc" -static -O2 -pthread -o "$work/soak-musl" "$root/soak/soak.c"
result $? "build soak.c static on the sysroot ($(basename "$S"))"
"${CC:-cc}" -O2 -pthread -o "$work/soak-standalone" "$root/soak/soak.c" "$build/libngmalloc.a"
result $? "build soak.c with ${CC:-cc}, linked to libngmalloc.a"

for kind in musl standalone; do
  if [ -x "$work/soak-$kind" ]; then
    soak "$kind" "$each" "$work/soak-$kind"
    result $rc "$kind: $verdict"
  fi
done

# One block in 10 leaked: tens of MiB/s, far above what the verdict tolerates even on a
# slow or busy machine; exit 1 is the RSS verdict, anything else (a crash) is no proof.
if [ -x "$work/soak-standalone" ]; then
  soak leak "$leak" env SOAK_LEAK=10 "$work/soak-standalone"
  [ $rc = 1 ] && [[ $verdict == *"RSS grew"* ]]
  result $? "leak self-check: a run leaking 1 block in 10 fails the verdict ($verdict)"
fi
summary "soak"
