#!/usr/bin/env bash
# The attack suite: every program in attacks/ against ngmalloc's standalone library
# (linked in), ngmalloc's static musl sysroot, and stock musl (Debian's musl-tools, when
# installed), each built -O0 the same way. ngmalloc's outcomes must equal
# attacks/expected.txt (or EXPECTED=file); the table goes to build/attacks.md.
# With ARCH another than the host's (e.g. ARCH=aarch64), the programs run under qemu-user,
# only on the musl sysroot (the standalone library is the host's), and STOCK-SYSROOT, a
# stock musl sysroot of that ARCH, stands in for musl-tools; the table goes to
# build/attacks-ARCH.md.
# Usage: [ARCH=aarch64] attacks.sh BUILD-DIR NGMALLOC-SYSROOT [STOCK-SYSROOT]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "$1")
S=$(realpath "$2")
. "$root/ci/lib.sh"   # ARCH, RUN, CROSS (non-empty for another ARCH)
expected=${EXPECTED:-$root/attacks/expected.txt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
outcome() { # program -> clean | SIGxxx | exit N | n/a
  [ -x "$1" ] || { echo n/a; return; }
  timeout 20 "${RUN[@]}" "$1" >/dev/null 2>&1
  local r=$?
  if [ $r = 0 ]; then echo clean
  elif [ $r = 124 ]; then echo timeout
  elif [ $r -gt 128 ]; then echo "SIG$(kill -l $((r - 128)))"
  else echo "exit $r"; fi
}
caught() { case "$1" in SIG*) return 0 ;; *) return 1 ;; esac; }
if [ -n "${3:-}" ]; then
  stock_cc=$(realpath "$3")/bin/ngmalloc-cc stock_name="stock musl ($ARCH sysroot, static)"
else
  stock_cc=$(command -v musl-gcc || true) stock_name="stock musl (musl-tools, static)"
fi
[ -n "$stock_cc" ] || stock_name="stock musl (not installed)"
pass=0
fail=0
n_caught=0
s_caught=0
total=0
table="$build/attacks${CROSS:+-$ARCH}.md"
{
  echo "| attack | ngmalloc (standalone) | ngmalloc (musl, static) | $stock_name |"
  echo "|---|---|---|---|"
} >"$table"
while read -r name want; do
  case "$name" in ''|'#'*) continue ;; esac
  src="$root/attacks/$name.c"
  [ -n "$CROSS" ] || gcc -O0 -w -I"$root/attacks" -o "$work/$name.standalone" "$src" "$build/libngmalloc.a" -pthread 2>/dev/null
  "$S/bin/ngmalloc-cc" -O0 -w -static -I"$root/attacks" -o "$work/$name.musl" "$src" 2>/dev/null
  [ -n "$stock_cc" ] && "$stock_cc" -O0 -w -static -I"$root/attacks" -o "$work/$name.stock" "$src" 2>/dev/null
  a=$(outcome "$work/$name.standalone")
  b=$(outcome "$work/$name.musl")
  c=$(outcome "$work/$name.stock")
  total=$((total + 1))
  caught "$b" && n_caught=$((n_caught + 1))
  caught "$c" && s_caught=$((s_caught + 1))
  echo "| $name | $a | $b | $c |" >>"$table"
  if [[ ( -n "$CROSS" || "|$want|" == *"|$a|"* ) && "|$want|" == *"|$b|"* ]]; then
    pass=$((pass + 1))
    if [ -n "$CROSS" ]; then shown="musl $b"; else shown=$a; fi
    echo "ok - $name: $shown (stock musl: $c)"
  else
    fail=$((fail + 1))
    echo "not ok - $name: standalone $a, musl $b, expected $want"
  fi
done <"$expected"
echo "| **caught (a signal)** | | **$n_caught of $total** | **$s_caught of $total** |" >>"$table"
echo "caught deterministically: ngmalloc $n_caught of $total, stock musl $s_caught of $total (table in $table)"
echo "attacks${CROSS:+ ($ARCH)}: $pass passed, $fail failed"
[ "$fail" = 0 ]
