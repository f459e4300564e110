#!/usr/bin/env bash
# Build ngmalloc's core as the one relocatable object musl links into libc.a and libc.so
# (called by musl's make through src/malloc/ngmalloc/build.mak).
#  1. cargo: the ngmalloc-musl staticlib (fat LTO, panic=abort, position-independent);
#  2. ld -r: one object with what the exports need;
#  3. objcopy: only the exports stay global, the public ones (aligned_alloc,
#     malloc_usable_size, free_sized, free_aligned_sized) weak, so a static program
#     defining its own still links; no unwind tables or LLVM sections.
# Usage: rust-object.sh RUST-TARGET OUTPUT.o   (CROSS_COMPILE selects the binutils,
# NGMALLOC_FEATURES the Cargo features, e.g. "harden-zero-on-free harden-quarantine")
set -euo pipefail
target=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
exports="__libc_malloc_impl __libc_free __libc_realloc aligned_alloc malloc_usable_size \
__malloc_donate __malloc_allzerop __malloc_atfork __malloc_thread_exit free_sized free_aligned_sized"
weak="aligned_alloc malloc_usable_size free_sized free_aligned_sized"
cross=${CROSS_COMPILE:-}

# relro-level=partial: rustc then calls external functions through the PLT, which the
# linker turns into direct calls to the (hidden) glue instead of loads from the GOT, each
# a relocation in libc.so.
RUSTFLAGS="-C relocation-model=pic -C relro-level=partial ${NGMALLOC_RUSTFLAGS:-}" \
  cargo build --quiet --manifest-path "$root/Cargo.toml" --release -p ngmalloc-musl --target "$target" \
  ${NGMALLOC_FEATURES:+--features "$NGMALLOC_FEATURES"} \
  --target-dir "$root/target/musl-object${NGMALLOC_FEATURES:+-hardened}"
lib="$root/target/musl-object${NGMALLOC_FEATURES:+-hardened}/$target/release/libngmalloc_musl.a"

tmp="$out.tmp.o"
undef=()
for s in $exports; do undef+=(-u "$s"); done
"${cross}ld" -r "${undef[@]}" -o "$tmp" "$lib"
keep=()
for s in $exports; do keep+=("--keep-global-symbol=$s"); done
for s in $weak; do keep+=("--weaken-symbol=$s"); done
"${cross}objcopy" "${keep[@]}" --strip-debug \
  -R .eh_frame -R .rela.eh_frame -R .llvmbc -R .llvmcmd -R .comment \
  "$tmp" "$out"
rm -f "$tmp"
