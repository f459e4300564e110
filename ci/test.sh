#!/usr/bin/env bash
# Every test of `make test`, in order. Each step prints "ok - step" or "not ok - step";
# the last line is "N passed, N failed". Exit status is non-zero if any step failed.
#
# Usage: ci/test.sh [--list] [NAME...]
#   NAME    run only the steps whose name contains one of these (case-sensitive), e.g.
#           ci/test.sh "C semantics" "attack suite"; `make check` runs the quick ones
#   --list  print the steps' names
# The library and the sysroot must be built first (`make`): `make test` does that.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
CARGO=${CARGO:-cargo}
# the sysroots' musl version (make's MUSL)
MUSL=${MUSL:-1.2.6}
EXPORTS=${EXPORTS:-$(make -s --no-print-directory print-EXPORTS)}
CXX_EXPORTS=${CXX_EXPORTS:-$(make -s --no-print-directory print-CXX_EXPORTS)}
list=false
selected=("$@")
if [ "${1:-}" = --list ]; then
  list=true selected=()
fi
pass=0
fail=0
skipped=0
failed_steps=()
chosen() { # whether step $1 is selected
  [ ${#selected[@]} = 0 ] && return 0
  local want
  for want in "${selected[@]}"; do
    case "$1" in *"$want"*) return 0 ;; esac
  done
  return 1
}
step() {
  local name=$1
  shift
  if $list; then
    echo "$name"
    return
  fi
  if ! chosen "$name"; then
    skipped=$((skipped + 1))
    return
  fi
  echo "== $name"
  if "$@"; then
    echo "ok - $name"
    pass=$((pass + 1))
  else
    echo "not ok - $name"
    fail=$((fail + 1))
    failed_steps+=("$name")
  fi
}

exports_match() {
  local want got_so got_a
  want=$(tr ' ' '\n' <<<"$EXPORTS $CXX_EXPORTS" | grep . | sort)
  got_so=$(nm -D --defined-only "$BUILD/libngmalloc.so" | awk '$2 ~ /[TWV]/ {print $3}' | sort)
  # (new.o's DW.ref.__gxx_personality_v0 is a hidden COMDAT any C++ object has)
  got_a=$(nm -g --defined-only "$BUILD/libngmalloc.a" | awk 'NF == 3 && $3 !~ /^DW\.ref\./ {print $3}' | sort)
  [ "$got_so" = "$want" ] || { echo "libngmalloc.so exports differ:"; diff <(echo "$want") <(echo "$got_so"); return 1; }
  [ "$got_a" = "$want" ] || { echo "libngmalloc.a globals differ:"; diff <(echo "$want") <(echo "$got_a"); return 1; }
  ! readelf -S "$BUILD/ngmalloc.o" | grep -q eh_frame || { echo "ngmalloc.o has .eh_frame"; return 1; }
}

c_semantics() {
  local t="$BUILD/c-tests"
  mkdir -p "$t"
  "$CC" -O2 -pthread -DNGM_STANDALONE -o "$t/semantics" c-tests/semantics.c || return 1
  "$CC" -O2 -pthread -DNGM_STANDALONE -o "$t/semantics-static" c-tests/semantics.c "$BUILD/libngmalloc.a" || return 1
  "$CC" -O2 -pthread -DNGM_STANDALONE -o "$t/semantics-dyn" c-tests/semantics.c -L"$BUILD" -lngmalloc \
    -Wl,-rpath,"$(realpath "$BUILD")" || return 1
  local r=0
  # each binary runs once: its failures and summary shown, its exit status the verdict
  echo "-- LD_PRELOAD"; once env LD_PRELOAD="$(realpath "$BUILD/libngmalloc.so")" "$t/semantics" || r=1
  echo "-- linked with libngmalloc.a"; once "$t/semantics-static" || r=1
  echo "-- linked with -lngmalloc"; once "$t/semantics-dyn" || r=1
  [ $r = 0 ]
}

# run a TAP-style test program once: print what is not an "ok" line (failures, the
# summary), return its exit status
once() {
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  grep -v '^ok' <<<"$out"
  [ $rc = 0 ] || echo "exit status $rc"
  return $rc
}

# C++'s operators (standalone/new.cc) in a C++ program: linked in and preloaded
cxx_operators() {
  local t="$BUILD/c-tests"
  mkdir -p "$t"
  "${CXX:-g++}" -O2 -Wall -pthread -o "$t/new-static" c-tests/new.cc "$BUILD/libngmalloc.a" || return 1
  "${CXX:-g++}" -O2 -Wall -pthread -o "$t/new" c-tests/new.cc || return 1
  local r=0
  echo "-- linked with libngmalloc.a"; once "$t/new-static" || r=1
  echo "-- LD_PRELOAD"; once env LD_PRELOAD="$(realpath "$BUILD/libngmalloc.so")" "$t/new" || r=1
  [ $r = 0 ]
}

step "cargo fmt --check" "$CARGO" fmt --all --check
step "cargo clippy -D warnings" "$CARGO" clippy --workspace --all-targets -q -- -D warnings
step "host tests (cargo test)" "$CARGO" test -q -p ngmalloc-core
# NGMALLOC_DECAY_MS=0, mallocng's behaviour: nothing held, nothing kept for the next thread
step "host tests with NGMALLOC_DECAY_MS=0" env NGMALLOC_DECAY_MS=0 CARGO_TARGET_DIR=target/decay0 \
  "$CARGO" test -q -p ngmalloc-core
# the Rust crate (global-allocator/): a test binary whose global allocator it is, on the
# gnu target (dynamic and static) and the musl target (static), and on aarch64 under
# qemu-user below
step "Rust crate as the global allocator (x86_64 gnu, gnu static, musl)" sh -c \
  "'$CARGO' test -q -p ngmalloc && '$CARGO' test -q -p ngmalloc --target x86_64-unknown-linux-musl && RUSTFLAGS='-C target-feature=+crt-static' '$CARGO' test -q -p ngmalloc --target x86_64-unknown-linux-gnu --target-dir target/crt-static"
step "Rust crate: a new project following the README's three steps (gnu, musl)" ci/rust-crate.sh
step "exported symbols match the allowlist" exports_match
step "C semantics (preload, static, dynamic)" c_semantics
step "C++ operator new and delete (static, preload)" cxx_operators
step "real programs under LD_PRELOAD" ci/real-programs.sh "$BUILD/libngmalloc.so"
step "Rust bindings match ngmalloc.h (bindgen)" toolchain/bindings.sh --check
# musl: every supported version (1.2.6 the default), each against a stock build of the
# same version
for v in 1.2.6 1.2.5 1.2.3; do
  step "musl $v sysroots build (ngmalloc and stock)" sh -c \
    "toolchain/build-sysroot.sh --musl $v >/dev/null && toolchain/build-sysroot.sh --musl $v --malloc mallocng >/dev/null"
  step "musl $v sysroot tests" ci/musl-tests.sh "$BUILD/sysroot-musl-$v" "$BUILD/sysroot-musl-$v-mallocng" "$BUILD/musl-src-$v"
done
step "toolchain: no-op re-run, checksum refusal, configure messages" ci/toolchain-tests.sh
step "make install and install-sysroot, moved: pkg-config, C, a Rust crate with C code" \
  ci/install-tests.sh "$BUILD"
# aarch64: the sysroots cross-built, the core's host tests and the C tests, the guards and
# the attack suite run under qemu-user. qemu-user accepts MADV_GUARD_INSTALL and installs
# nothing: the allocator detects it and uses PROT_NONE guards; guards.c detects it too and
# expects them. The three host tests of real guard markers are skipped there, by name.
a64=$BUILD/sysroot-musl-$MUSL-aarch64
step "aarch64: sysroots cross-build (ngmalloc and stock)" sh -c \
  "toolchain/build-sysroot.sh --musl $MUSL --arch aarch64 >/dev/null && toolchain/build-sysroot.sh --musl $MUSL --arch aarch64 --malloc mallocng >/dev/null"
step "aarch64 (qemu-user): host tests, but the 3 of real guard markers" env \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64 \
  "$CARGO" test -q -p ngmalloc-core --target aarch64-unknown-linux-musl --target-dir target/aarch64 -- \
  --skip a_failing_mapping_first_gives_up_the_cached_ones \
  --skip large_blocks_are_guarded_with_madvise_and_with_the_fallback \
  --skip large_blocks_are_mapped_alone_and_remapped_on_realloc
step "aarch64 (qemu-user): the Rust crate as the global allocator (musl, gnu)" env \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64 \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64 \
  NGMALLOC_TEST_RUNNER=qemu-aarch64 QEMU_LD_PREFIX=/usr/aarch64-linux-gnu sh -c \
  "'$CARGO' test -q -p ngmalloc --target aarch64-unknown-linux-musl --target-dir target/aarch64 && '$CARGO' test -q -p ngmalloc --target aarch64-unknown-linux-gnu --target-dir target/aarch64"
step "aarch64 (qemu-user): musl sysroot tests" env ARCH=aarch64 \
  ci/musl-tests.sh "$a64" "$a64-mallocng" "$BUILD/musl-src-$MUSL-aarch64"
step "aarch64 (qemu-user): guards (the fallback, detected) and mlockall" env ARCH=aarch64 \
  ci/hardening-tests.sh "$BUILD" "$a64"
step "aarch64 (qemu-user): attack suite (stock aarch64 musl for the record)" env ARCH=aarch64 \
  ci/attacks.sh "$BUILD" "$a64" "$a64-mallocng"
step "aarch64 (qemu-user): the standalone library preloaded on glibc, with thread caches" \
  ci/aarch64-standalone.sh "$BUILD"
# real software: BusyBox's and gawk's own test suites, ngmalloc against stock musl; the
# test image (BusyBox, C tests, attack suite) booted on Debian's 6.1 kernel under qemu
step "real test suites: BusyBox and gawk, the same tests pass as on stock musl" \
  real-software/suites.sh "$BUILD/sysroot-musl-$MUSL" "$BUILD/sysroot-musl-$MUSL-mallocng" "$BUILD/real"
step "rootfs image built (make rootfs)" make -s rootfs BUILD="$BUILD"
step "rootfs image boots on Linux 6.1 under qemu, every test passes (make rootfs-test)" \
  rootfs/boot-test.sh "$BUILD/rootfs/vmlinuz" "$BUILD/rootfs/initramfs.cpio.gz"
step "rootfs image boots on Debian forky's 7.x kernel, real guard markers, every test passes" \
  rootfs/boot-test.sh "$BUILD/rootfs/vmlinuz-forky" "$BUILD/rootfs/initramfs.cpio.gz" "$BUILD/rootfs/console-forky.log"
# reliability: real out-of-memory, a time-boxed soak, the lock-free paths model-checked,
# the threaded stress under ThreadSanitizer, Miri, and each fuzz target for a fixed time
step "out of memory: RLIMIT_AS, RLIMIT_DATA, brk blocked (standalone, musl static)" \
  ci/oom-tests.sh "$BUILD" "$BUILD/sysroot-musl-$MUSL" "$BUILD/sysroot-musl-$MUSL-mallocng"
step "soak: 60 s churn, RSS stops growing (musl static, standalone)" \
  ci/soak.sh "$BUILD" "$BUILD/sysroot-musl-$MUSL" 60
step "loom: the free fast path against the locked paths, owned groups against remote frees and exit" ci/loom.sh
step "ThreadSanitizer: threads, cross-thread frees, exit, fork" ci/tsan.sh
step "Miri with strict provenance" ci/miri.sh
step "fuzzing: ops and headers, 60 s each" ci/fuzz.sh 60
step "guard regions and mlockall (standalone, musl static)" ci/hardening-tests.sh "$BUILD" "$BUILD/sysroot-musl-$MUSL"
step "attack suite (standalone, musl static; stock musl for the record)" ci/attacks.sh "$BUILD" "$BUILD/sysroot-musl-$MUSL"
step "docs/hardening.md's attack table is this run's (ci/docs-tables.sh)" ci/docs-tables.sh "$BUILD"
# every optional mitigation at once: host tests, then the attack suite on hardened builds
step "host tests with HARDEN=all" "$CARGO" test -q -p ngmalloc-core --features harden-all
# each option alone too (one depends on another's absence: the freed word does nothing
# beside zero-on-free, so harden-all does not run its paths)
harden_each() {
  local o r=0
  for o in $(make -s --no-print-directory print-HARDEN_OPTIONS); do
    echo "-- harden-$o"
    CARGO_TARGET_DIR=target/harden-one "$CARGO" test -q -p ngmalloc-core --features "harden-$o" 2>&1 |
      grep -E '^test result: FAILED|panicked|^error|^failures:' && r=1
    [ "${PIPESTATUS[0]}" = 0 ] || r=1
  done
  [ $r = 0 ]
}
step "host tests with each HARDEN option alone" harden_each
step "hardened builds (standalone, musl $MUSL)" sh -c \
  "make -s lib BUILD=$BUILD/hardened HARDEN=all CARGO_TARGET_DIR=target/hardened >/dev/null && toolchain/build-sysroot.sh --musl $MUSL --harden all >/dev/null"
step "attack suite with HARDEN=all" env EXPECTED=attacks/expected-hardened.txt \
  ci/attacks.sh "$BUILD/hardened" "$BUILD/sysroot-musl-$MUSL-hardened"
# the benchmark harness on tiny sizes: everything runs, on the allocator it names, and reports
step "benchmark harness (make bench-quick)" make -s bench-quick BUILD="$BUILD"
if ! $list && [ ${#selected[@]} = 0 ]; then
  echo "size of the allocator object ($BUILD/ngmalloc.o):"
  size "$BUILD/ngmalloc.o"
fi

$list && exit 0
if [ $((pass + fail)) = 0 ]; then
  echo "no step matches: $* (ci/test.sh --list names them)" >&2
  exit 2
fi
if [ "$fail" != 0 ]; then
  printf 'failed: %s\n' "${failed_steps[@]}"
fi
echo "$pass passed, $fail failed$([ "$skipped" = 0 ] || echo ", $skipped not selected")"
[ "$fail" = 0 ]
