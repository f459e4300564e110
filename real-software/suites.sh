#!/usr/bin/env bash
# Real software's own test suites, unmodified, on ngmalloc and on stock musl: BusyBox 1.35.0
# (its testsuite, `make check`) and GNU awk 5.2.1 (`make check` in test/), each built
# statically from Debian's source against both sysroots. The same tests must pass: every
# test that passes on stock musl passes on ngmalloc. A test that differs is given one more
# run of the whole suite on both builds (some tests race their own pipes), and counts only
# if it differs again. The wget tests fetch from the Internet: SKIP_INTERNET_TESTS=1, the
# testsuite's own switch, leaves them out.
# Usage: real-software/suites.sh NGMALLOC-SYSROOT STOCK-SYSROOT OUT-DIR
# Prints ok/not ok lines and "real test suites: N passed, N failed".
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../ci/lib.sh"
S=$(realpath "$1")
T=$(realpath "$2")
out=$(mkdir -p "$3" && realpath "$3")

# run-suite NAME BUILD-DIR SYSROOT: the suite's results, one "PASS name"/"FAIL name" a line
busybox_suite() {
  (cd "$1/src" && SKIP_INTERNET_TESTS=1 make -s CC="$2/bin/ngmalloc-cc" HOSTCC=gcc check >"$1/check.log" 2>&1)
  sed -n 's/^\(PASS\|FAIL\): /\1 /p' "$1/check.log" | sort -u
}
gawk_suite() {
  (cd "$1/src" && rm -f test/_* && make -C test check >"$1/check.log" 2>&1)
  # the tests that ran print their names (lines naming a test's .ok file); those that
  # failed leave test/_NAME behind
  local failed
  failed=$(cd "$1/src/test" && ls _* 2>/dev/null | sed 's/^_//')
  grep -E '^[A-Za-z0-9_.+-]+$' "$1/check.log" | sort -u |
    while read -r t; do
      [ -f "$1/src/test/$t.ok" ] || continue
      if grep -qxF -- "$t" <<<"$failed"; then echo "FAIL $t"; else echo "PASS $t"; fi
    done
}
# served BINARY: linked with ngmalloc's core (its glue's symbols are in the symbol table)
served() { nm "$1" 2>/dev/null | grep -q ' __ngm_mmap$'; }

compare() { # name suite-function ngmalloc-dir stock-dir
  local name=$1 suite=$2 n=$3 s=$4
  "$suite" "$n" "$S" >"$n/results"
  "$suite" "$s" "$T" >"$s/results"
  # passing on stock, not on ngmalloc
  lost() { comm -23 <(sed -n 's/^PASS //p' "$s/results") <(sed -n 's/^PASS //p' "$n/results"); }
  local diff
  diff=$(lost)
  if [ -n "$diff" ]; then
    echo "$name: differing on a first run, running both again: $(echo $diff)"
    cp "$n/results" "$n/results.1"
    cp "$s/results" "$s/results.1"
    "$suite" "$n" "$S" >"$n/results"
    "$suite" "$s" "$T" >"$s/results"
    diff=$(comm -12 <(echo "$diff") <(lost))
  fi
  local np nf sp sf
  np=$(grep -c '^PASS' "$n/results") nf=$(grep -c '^FAIL' "$n/results")
  sp=$(grep -c '^PASS' "$s/results") sf=$(grep -c '^FAIL' "$s/results")
  echo "$name: ngmalloc $np passed, $nf failed; stock musl $sp passed, $sf failed"
  [ "$nf" = 0 ] || echo "  failing on both: $(sed -n 's/^FAIL //p' "$n/results" | paste -sd, -)"
  [ -z "$diff" ] || echo "  pass on stock musl only: $diff"
  [ -z "$diff" ] && [ "$np" -gt 0 ] && [ "$np" -ge "$sp" ]
}

"$here/busybox.sh" "$S" "$out/busybox-ngmalloc" && "$here/busybox.sh" "$T" "$out/busybox-stock" &&
  served "$out/busybox-ngmalloc/src/busybox_unstripped" && ! served "$out/busybox-stock/src/busybox_unstripped"
result $? "BusyBox 1.35.0 built static on ngmalloc and on stock musl (ngmalloc linked in only the first)"
compare "BusyBox testsuite" busybox_suite "$out/busybox-ngmalloc" "$out/busybox-stock"
result $? "BusyBox testsuite: the same tests pass on ngmalloc as on stock musl"

"$here/gawk.sh" "$S" "$out/gawk-ngmalloc" && "$here/gawk.sh" "$T" "$out/gawk-stock" &&
  served "$out/gawk-ngmalloc/gawk" && ! served "$out/gawk-stock/gawk"
result $? "GNU awk 5.2.1 built static on ngmalloc and on stock musl (ngmalloc linked in only the first)"
compare "gawk test suite" gawk_suite "$out/gawk-ngmalloc" "$out/gawk-stock"
result $? "gawk test suite: the same tests pass on ngmalloc as on stock musl"
summary "real test suites"
