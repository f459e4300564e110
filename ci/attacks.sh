#!/usr/bin/env bash
# The attack suite: every program in attacks/ (C, and C++ for the operators' checks)
# against ngmalloc's standalone library (linked in), ngmalloc's static musl sysroot, and
# for the record stock musl (Debian's musl-tools), glibc's allocator and Scudo (LLVM's,
# preloaded on the glibc build), each built -O0 the same way. ngmalloc's outcomes must
# equal attacks/expected.txt (or EXPECTED=file); the table goes to build/attacks.md.
# C++ programs have no musl column: the sysroot has no C++ library.
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
scudo=/usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.scudo_standalone-x86_64.so
[ -e "$scudo" ] || scudo=
pass=0
fail=0
n_caught=0
a_caught=0
s_caught=0
g_caught=0
c_caught=0
total=0
table="$build/attacks${CROSS:+-$ARCH}.md"
{
  echo "| attack | ngmalloc (standalone) | ngmalloc (musl, static) | $stock_name | glibc 2.36 | Scudo (LLVM 19) |"
  echo "|---|---|---|---|---|---|"
} >"$table"
while read -r name want; do
  case "$name" in ''|'#'*) continue ;; esac
  w="$work/$name"
  if [ -e "$root/attacks/$name.cc" ]; then
    src="$root/attacks/$name.cc"
    # (no C++ library for musl: those columns stay n/a)
    if [ -z "$CROSS" ]; then
      g++ -O0 -w -o "$w.standalone" "$src" "$build/libngmalloc.a" -pthread 2>/dev/null
      g++ -O0 -w -o "$w.glibc" "$src" -pthread 2>/dev/null
    fi
  else
    src="$root/attacks/$name.c"
    if [ -z "$CROSS" ]; then
      gcc -O0 -w -I"$root/attacks" -o "$w.standalone" "$src" "$build/libngmalloc.a" -pthread 2>/dev/null
      gcc -O0 -w -I"$root/attacks" -o "$w.glibc" "$src" -pthread 2>/dev/null
    fi
    "$S/bin/ngmalloc-cc" -O0 -w -static -I"$root/attacks" -o "$w.musl" "$src" 2>/dev/null
    [ -n "$stock_cc" ] && "$stock_cc" -O0 -w -static -I"$root/attacks" -o "$w.stock" "$src" 2>/dev/null
  fi
  a=$(outcome "$w.standalone")
  b=$(outcome "$w.musl")
  c=$(outcome "$w.stock")
  g=$(outcome "$w.glibc")
  if [ -n "$scudo" ] && [ -x "$w.glibc" ]; then
    sc=$(LD_PRELOAD=$scudo outcome "$w.glibc")
  else
    sc=n/a
  fi
  total=$((total + 1))
  caught "$a" && a_caught=$((a_caught + 1))
  caught "$b" && n_caught=$((n_caught + 1))
  caught "$c" && s_caught=$((s_caught + 1))
  caught "$g" && g_caught=$((g_caught + 1))
  caught "$sc" && c_caught=$((c_caught + 1))
  echo "| $name | $a | $b | $c | $g | $sc |" >>"$table"
  # each column of ngmalloc's that this build has: the standalone library's (not when
  # cross-testing), the musl sysroot's (not for C++)
  ok=1
  [ -n "$CROSS" ] || [[ "|$want|" == *"|$a|"* ]] || ok=0
  [ "$b" = n/a ] && [ "${src##*.}" = cc ] || [[ "|$want|" == *"|$b|"* ]] || ok=0
  if [ $ok = 1 ]; then
    pass=$((pass + 1))
    if [ -n "$CROSS" ]; then shown="musl $b"; else shown=$a; fi
    echo "ok - $name: $shown (stock musl: $c, glibc: $g, Scudo: $sc)"
  else
    fail=$((fail + 1))
    echo "not ok - $name: standalone $a, musl $b, expected $want"
  fi
done <"$expected"
echo "| **caught (a signal)** | **$a_caught of $total** | **$n_caught of $total** | **$s_caught of $total** | **$g_caught of $total** | **$c_caught of $total** |" >>"$table"
echo "caught (a signal): ngmalloc standalone $a_caught, musl $n_caught, stock musl $s_caught, glibc $g_caught, Scudo $c_caught, of $total (table in $table)"
echo "attacks${CROSS:+ ($ARCH)}: $pass passed, $fail failed"
[ "$fail" = 0 ]
