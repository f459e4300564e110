#!/usr/bin/env bash
# Check the tools a target needs; install what is missing (Debian packages as root, Rust
# targets and components through rustup), else stop with the exact command to run (on a
# host without apt: the list of tools).
#
# Usage: ci/deps.sh [build|bench|test]
#   build  what `make` needs: gcc, g++, binutils, make, patch, Linux's headers, cargo and
#          the Rust musl target of this machine
#   bench  build's, and the benchmark harness's: valgrind, strace, gnuplot, stock musl's
#          gcc wrapper, and the allocators it compares (mimalloc, jemalloc, Scudo)
#   test   (default) everything `make test` runs: bench's, and the cross compiler,
#          qemu-user and qemu-system, bindgen, nightly Rust with Miri, cargo-fuzz
set -eu
profile=${1:-test}
case $profile in build|bench|test) ;; *) echo "deps.sh: unknown profile $profile (build, bench or test)" >&2; exit 2 ;; esac
arch=$(uname -m)
need_pkgs=() need_what=()
# want PACKAGE WHAT TEST...: unless the command TEST succeeds, PACKAGE is missing
want() {
  local pkg=$1 what=$2
  shift 2
  "$@" >/dev/null 2>&1 && return 0
  need_pkgs+=("$pkg")
  need_what+=("$what (Debian: $pkg)")
}
# need TOOL PACKAGE [WHAT]: the command TOOL
need() { want "$2" "${3:-$1}" command -v "$1"; }
have_lib() { local p; p=$(gcc -print-file-name="$1" 2>/dev/null) && [ "$p" != "$1" ] && [ -e "$p" ]; }
at_least() { # whether the profile includes $1
  case "$profile:$1" in build:build | bench:build | bench:bench | test:*) return 0 ;; esac
  return 1
}

# build
need cc gcc "a C compiler (cc)"
need gcc gcc
need g++ g++ "a C++ compiler (g++: the library's operator new and delete)"
for t in ld objcopy ar nm size; do need "$t" binutils; done
need make make
need patch patch "patch (applies musl-patches/)"
# Linux's user-space headers, copied into the sysroot
want linux-libc-dev "Linux's user-space headers (/usr/include/linux)" test -e /usr/include/linux/version.h

if at_least bench; then
  need valgrind valgrind "valgrind (instruction and lock counts)"
  need strace strace "strace (futex counts)"
  need gnuplot gnuplot-nox "gnuplot (the benchmark chart)"
  need python3 python3
  need musl-gcc musl-tools "musl-gcc (Debian's musl, for the record)"
  want libmimalloc2.0 libmimalloc.so.2 have_lib libmimalloc.so.2
  want libjemalloc2 libjemalloc.so.2 have_lib libjemalloc.so.2
  want libclang-rt-19-dev "Scudo (LLVM 19's compiler-rt)" \
    test -e /usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.scudo_standalone-x86_64.so
fi

if at_least test; then
  need readelf binutils
  need git git
  need file file
  need cpio cpio "cpio (packs the test image)"
  need pkg-config pkgconf "pkg-config (the install test)"
  need bindgen bindgen "bindgen (the C/Rust boundary check)"
  need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu "the aarch64 cross compiler"
  need qemu-aarch64 qemu-user "qemu-user (aarch64 programs)"
  need qemu-system-x86_64 qemu-system-x86 "qemu-system (boots the test image)"
  want linux-libc-dev-arm64-cross "Linux's headers for aarch64" \
    test -e /usr/aarch64-linux-gnu/include/linux/version.h
  # bindgen loads libclang at run time
  want libclang1 libclang sh -c 'ls /usr/lib/llvm-*/lib/libclang.so.1 /usr/lib/*/libclang-*.so.1'
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ngmalloc: cargo is missing. Install Rust (https://rustup.rs), then re-run make." >&2
  exit 1
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ngmalloc: missing tools (install them with your system's package manager):" >&2
    printf '  %s\n' "${need_what[@]}" >&2
    exit 1
  elif [ "$(id -u)" = 0 ]; then
    echo "ngmalloc: installing ${pkgs[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "ngmalloc: missing tools. Run: sudo apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
fi
rustup_add() { # what, rustup arguments...
  if command -v rustup >/dev/null 2>&1; then
    rustup "${@:2}" >/dev/null 2>&1 || { echo "ngmalloc: could not install $1. Run: rustup ${*:2}" >&2; exit 1; }
  else
    echo "ngmalloc: $1 is missing. Run: rustup ${*:2}" >&2
    exit 1
  fi
}
has_target() { [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]; }
targets=("$arch-unknown-linux-musl")
at_least test && targets+=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-unknown-linux-gnu)
for target in "${targets[@]}"; do
  has_target "$target" || rustup_add "the Rust target $target" target add "$target"
done
at_least test || exit 0
cargo fmt --version >/dev/null 2>&1 || rustup_add rustfmt component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup_add clippy component add clippy
# the reliability checks of `make test`: nightly Rust with rust-src (ThreadSanitizer
# rebuilds std with the sanitizer) and Miri, and cargo-fuzz (libFuzzer)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup_add "nightly Rust" toolchain install nightly --profile minimal --component rust-src,miri
fi
for c in rust-src miri; do
  rustup component list --toolchain nightly --installed 2>/dev/null | grep -q "^$c" ||
    rustup_add "the nightly component $c" component add --toolchain nightly "$c"
done
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "ngmalloc: installing cargo-fuzz" >&2
  cargo install -q cargo-fuzz --locked >/dev/null 2>&1 ||
    { echo "ngmalloc: could not install cargo-fuzz. Run: cargo install cargo-fuzz --locked" >&2; exit 1; }
fi
