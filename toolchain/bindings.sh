#!/usr/bin/env bash
# Generate src/os/musl_sys.rs, the Rust side of the C/Rust boundary, from
# musl-patches/ngmalloc/ngmalloc.h with bindgen. A development-time tool: users building
# the toolchain never need bindgen or libclang; `make test` runs it with --check to prove
# the committed file has not drifted from the header.
# Usage: toolchain/bindings.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/os/musl_sys.rs
command -v bindgen >/dev/null || { echo "bindgen is missing. Run: apt-get install -y bindgen" >&2; exit 1; }
gen() {
  {
    echo "//! Generated from musl-patches/ngmalloc/ngmalloc.h by toolchain/bindings.sh: do not edit."
    echo "#![allow(non_camel_case_types, non_upper_case_globals, missing_docs, dead_code)]"
    echo "#![allow(clippy::missing_safety_doc)]"
    echo
    bindgen musl-patches/ngmalloc/ngmalloc.h --use-core --ctypes-prefix core::ffi \
      --size_t-is-usize --no-layout-tests --no-doc-comments \
      --allowlist-function '__ngm_.*' --allowlist-var 'NGM_.*' \
      --allowlist-function '__libc_malloc_impl|__libc_free|__libc_realloc|aligned_alloc' \
      --allowlist-function 'malloc_usable_size|__malloc_donate|__malloc_allzerop|__malloc_atfork|__malloc_thread_exit' \
      --allowlist-function 'free_sized|free_aligned_sized' \
      -- -fno-builtin -DNGM_SERVICE= -I"$(cc -print-file-name=include)" |
      # edition 2024 wants extern blocks marked unsafe
      sed -e 's/^extern "C" {/unsafe extern "C" {/' -e '/^\/\* automatically generated/d'
  } | rustfmt --edition 2024
}
if [ "${1:-}" = --check ]; then
  diff -u "$out" <(gen) && echo "$out matches ngmalloc.h"
else
  gen >"$out"
  echo "wrote $out"
fi
