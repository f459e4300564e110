#!/usr/bin/env bash
# Out of memory as programs meet it: c-tests/oom.c under RLIMIT_AS and RLIMIT_DATA, and
# with the program break blocked (early and late), on ngmalloc's standalone library
# (linked in, and LD_PRELOAD into a glibc program) and its static musl sysroot. Stock
# musl (mallocng) runs the same for the record: its results are "#" lines and do not
# decide the exit status.
# Usage: oom-tests.sh BUILD-DIR NGMALLOC-SYSROOT STOCK-SYSROOT
set -u
[ $# = 3 ] || { echo "usage: $0 BUILD-DIR NGMALLOC-SYSROOT STOCK-SYSROOT" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "$1")
S=$(realpath "$2")
T=$(realpath "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$root/ci/lib.sh"
src="$root/c-tests/oom.c"
modes="as data brk-blocked brk-late"
# a mode takes about a second; a minute means it hangs
limit=60

# run PROGRAM MODE [ENV...]: sets `out` (its output) and `why` (empty if it passed, else
# how it failed: its failed checks, a signal or a timeout)
run() {
  local prog=$1 mode=$2
  shift 2
  out=$(cd "$work" && env "$@" timeout $limit "$prog" "$mode" 2>&1)
  local r=$?
  why=
  if [ $r = 124 ]; then why="hung: killed after $limit s"
  elif [ $r -gt 128 ]; then why="killed by SIG$(kill -l $((r - 128)))"
  elif [ $r != 0 ]; then why="exit $r"
  fi
  if [ -n "$why" ]; then
    why="$why; $(echo "$out" | grep -c '^not ok') checks failed"
  fi
}
figures() { echo "$out" | sed -n 's/^# figures: *//p'; }

builds=()
build_one() { # NAME COMMAND...: compile, report a failure
  local name=$1
  shift
  if "$@" 2>"$work/cc.err"; then builds+=("$name"); return 0; fi
  cat "$work/cc.err" >&2
  return 1
}
cc=${CC:-cc}
flags="-O2 -std=c11 -Wall"
build_one linked $cc $flags -o "$work/linked" "$src" "$build/libngmalloc.a" -pthread
result $? "build: $cc, linked with libngmalloc.a"
build_one preload $cc $flags -o "$work/preload" "$src"
result $? "build: $cc, plain (for LD_PRELOAD)"
build_one musl "$S/bin/ngmalloc-cc" $flags -static -o "$work/musl" "$src"
result $? "build: $(basename "$S") (ngmalloc), static"
build_one stock "$T/bin/ngmalloc-cc" $flags -static -o "$work/stock" "$src" ||
  echo "# build: $(basename "$T") failed (record only)"

preload="LD_PRELOAD=$build/libngmalloc.so"
for b in "${builds[@]}"; do
  env=()
  case $b in
    linked) label="standalone, linked in" ;;
    preload) label="standalone, LD_PRELOAD"; env=("$preload") ;;
    musl) label="musl static (ngmalloc)" ;;
    stock) label="stock musl static (mallocng, record only)" ;;
  esac
  # the double-free trap tells who serves: a preload that did not take would test glibc
  run "$work/$b" who "${env[@]}"
  if [ $b = stock ]; then
    echo "# $label: served by $out"
  else
    [ "$out" = ngmalloc ]
    result $? "$label: ngmalloc serves the program (said: $out)"
  fi
  for mode in $modes; do
    run "$work/$b" $mode "${env[@]}"
    f=$(figures)
    name="$label: $mode${f:+ (MiB per round: $f)}"
    if [ $b = stock ]; then
      echo "# $name: ${why:-all checks pass}"
      continue
    fi
    # the failed checks, and the lines that say what was seen
    [ -z "$why" ] || { echo "$out" | grep -E '^not ok|^# .*(differs at|not zero|, failed: )' | sed 's/^/    /' >&2; }
    result $([ -z "$why" ]; echo $?) "$name${why:+: $why}"
  done
done
summary "oom"
