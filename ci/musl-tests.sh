#!/usr/bin/env bash
# Tests of a musl sysroot built with ngmalloc, against a stock (mallocng) build of the
# same musl version where a comparison is the point.
# Usage: [ARCH=aarch64] musl-tests.sh NGMALLOC-SYSROOT STOCK-SYSROOT MUSL-SRC-DIR
# (with ARCH another than the host's, the programs run under qemu-user)
# Prints ok/not ok lines, size and relocation figures, and "musl VERSION: N passed, N failed".
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
S=$(realpath "$1")
T=$(realpath "$2")
src=$(realpath "$3")
ver=$(basename "$src" | sed 's/musl-src-//')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"
# run PROGRAM...: its own checks must all pass (exit 0); failures are shown
runs() { local out; out=$("${RUN[@]}" "$@" 2>&1); local r=$?; [ $r = 0 ] || echo "$out" | grep -v '^ok' >&2; return $r; }
cc_n="$S/bin/ngmalloc-cc"
cc_s="$T/bin/ngmalloc-cc"
c="$root/c-tests"

# --- the object musl links, and what libc exports ------------------------------------
core="$src/obj/src/malloc/ngmalloc/ngmalloc_core.o"
want="__libc_free __libc_malloc_impl __libc_realloc __malloc_allzerop __malloc_atfork __malloc_donate __malloc_thread_exit aligned_alloc free_aligned_sized free_sized malloc_usable_size"
got=$("${CROSS}nm" -g --defined-only "$core" | awk '{print $3}' | sort | xargs)
weak=$("${CROSS}nm" -g --defined-only "$core" | awk '$2 == "W" {print $3}' | sort | xargs)
result $([ "$got" = "$want" ] && [ "$weak" = "aligned_alloc free_aligned_sized free_sized malloc_usable_size" ] &&
  ! "${CROSS}readelf" -S "$core" | grep -q eh_frame; echo $?) "the core object defines exactly musl's malloc interface and C23 free_sized/free_aligned_sized (public ones weak), no .eh_frame"
dyn() { "${CROSS}nm" -D --defined-only "$1/lib/libc.so" | awk '{print $3}' | sort; }
result $(diff <(dyn "$S" | grep -vxE 'free_sized|free_aligned_sized') <(dyn "$T") >/dev/null &&
  [ "$(dyn "$S" | grep -cxE 'free_sized|free_aligned_sized')" = 2 ] &&
  ! dyn "$S" | grep -qE '^__ngm_|^__libc_(malloc_impl|free|realloc)$'; echo $?) \
  "libc.so exports stock musl's symbols plus free_sized and free_aligned_sized, nothing internal"

# --- C programs: static, static-pie and dynamic ------------------------------------
for mode in -static -static-pie dynamic; do
  flag=$([ $mode = dynamic ] || echo $mode)
  "$cc_n" -O2 $flag -o "$work/sem$mode" "$c/semantics.c" &&
    runs "$work/sem$mode"
  result $? "C semantics, threads, fork ($mode)"
done
"$cc_n" -O2 -shared -fPIC -o "$work/libplugin.so" "$c/plugin.c" &&
  "$cc_n" -O2 -o "$work/dl" "$c/dlopen.c" && runs "$work/dl" "$work/libplugin.so"
result $? "dlopen, dlsym, dlclose, dlerror (dynamic)"
"$cc_n" -O2 -static -o "$work/dl-static" "$c/dlopen.c" && runs "$work/dl-static"
result $? "dlerror in a static program"
"$cc_n" -O2 -o "$work/donate" "$c/donate.c" && runs "$work/donate"
result $? "the dynamic linker's donated gaps are used"
"$cc_n" -O2 -o "$work/interpose" "$c/interpose.c" && runs "$work/interpose" &&
  "$cc_s" -O2 -o "$work/interpose-stock" "$c/interpose.c" && runs "$work/interpose-stock"
result $? "a program with its own malloc: aligned_alloc fails with ENOMEM, as on stock musl"
only() {
  "$1" -O2 -static -o "$2" "$c/malloc-only.c" && [ "$("${RUN[@]}" "$2")" = "bump allocator only" ] &&
    ! "${CROSS}nm" "$2" | grep -qE ' [TtWw] (__libc_free|__ngm_|__malloc_donate)' &&
    "${CROSS}nm" "$2" | grep -qE ' [Tt] __simple_malloc'
}
only "$cc_n" "$work/only" && only "$cc_s" "$work/only-stock"
result $? "a static program calling only malloc links only the bump allocator (as stock)"
for mode in -static dynamic; do
  flag=$([ $mode = dynamic ] || echo $mode)
  "$cc_n" -O2 $flag -pthread -o "$work/lf" "$c/libc-features.c" &&
    "$cc_s" -O2 $flag -pthread -o "$work/lf-stock" "$c/libc-features.c" &&
    a=$("${RUN[@]}" "$work/lf") && b=$("${RUN[@]}" "$work/lf-stock") && [ -n "$a" ] && [ "$a" = "$b" ]
  result $? "stdio, locale, pthread, time, regex, search: same output as stock musl ($mode)"
done

# --- Rust std, static-pie (the target's default) and classic static -----------------
target=$ARCH-unknown-linux-musl
rust() {
  local dir=$1
  shift
  env CARGO_TARGET_DIR="$root/target/musl-$ver-$dir" \
    "CARGO_TARGET_$(echo "$target" | tr a-z- A-Z_)_RUSTFLAGS=-C link-self-contained=no $*" \
    cargo --config "$S/cargo/config.toml" build -q --release --manifest-path "$root/Cargo.toml" \
    -p std-on-musl --target $target &&
    local bin="$root/target/musl-$ver-$dir/$target/release/std-on-musl" &&
    file "$bin" | grep -q "$dir" && runs "$bin"
}
rust static-pie
result $? "Rust std program (threads, collections, large, over-aligned, spawn), static-pie"
rust "statically linked" -C relocation-model=static
result $? "Rust std program, classic static (-C relocation-model=static)"

# --- figures for the record --------------------------------------------------------
stock_src="${src}-mallocng"
echo "figures, musl $ver:"
size "$core" | tail -1 | awk '{print "  ngmalloc core object: text " $1 ", data " $2 ", bss " $3}'
if [ -d "$stock_src/obj/src/malloc/mallocng" ]; then
  size "$stock_src"/obj/src/malloc/mallocng/*.lo | awk 'NR > 1 {t += $1; d += $2; b += $3} END {print "  mallocng objects:     text " t ", data " d ", bss " b}'
fi
relocs() { "${CROSS}readelf" -r "$1/lib/libc.so" | grep -cE '^[0-9a-f]+ '; }
echo "  libc.so relocations: ngmalloc $(relocs "$S"), stock $(relocs "$T")"

summary "musl $ver"
