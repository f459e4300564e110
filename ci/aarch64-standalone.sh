#!/usr/bin/env bash
# The standalone library for aarch64 (glibc), preloaded under qemu-user: the C semantics
# program passes, and its threads used thread caches (NGMALLOC_REPORT counts them: the
# per-thread path reads its TLS word in aarch64 assembly, src/os/linux.rs).
# Usage: ci/aarch64-standalone.sh BUILD-DIR
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: ci/aarch64-standalone.sh BUILD-DIR}" && pwd)
. "$root/ci/lib.sh"
target=aarch64-unknown-linux-gnu
out=$build/aarch64-standalone
mkdir -p "$out"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  cargo build -q --release -p ngmalloc-standalone --target "$target" --manifest-path "$root/Cargo.toml"
result $? "standalone library cross-built for $target"
lib=${CARGO_TARGET_DIR:-$root/target}/$target/release/libngmalloc_standalone.so
case $lib in /*) ;; *) lib=$root/$lib ;; esac
aarch64-linux-gnu-gcc -O2 -pthread -DNGM_STANDALONE -o "$out/semantics" "$root/c-tests/semantics.c"
result $? "C semantics program cross-built"
rm -f "$out/report"
QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 -E LD_PRELOAD="$lib" -E NGMALLOC_REPORT="$out/report" \
  "$out/semantics" >"$out/semantics.log" 2>&1
r=$?
grep -v '^ok' "$out/semantics.log"
result $r "C semantics, 8 threads, fork: the aarch64 standalone library preloaded under qemu-aarch64"
caches=$(sed -n 's/.* caches=\([0-9]*\).*/\1/p' "$out/report" 2>/dev/null | sort -n | tail -1)
echo "  report: $(head -1 "$out/report" 2>/dev/null)"
[ "${caches:-0}" -ge 8 ]
result $? "its threads used thread caches (caches=${caches:-none}, at least 8)"
summary "aarch64 standalone"
