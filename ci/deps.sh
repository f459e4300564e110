#!/usr/bin/env bash
# Check the tools the build and the tests need; install what is missing (Debian packages
# as root, the Rust musl target through rustup), else stop with the exact command to run.
set -eu
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need cc gcc
need gcc gcc
need ld binutils
need objcopy binutils
need ar binutils
need nm binutils
need size binutils
need readelf binutils
need python3 python3
need git git
need make make
need patch patch
need file file
need bindgen bindgen            # the C/Rust boundary check (tests only)
need musl-gcc musl-tools        # stock musl, for the attack suite's comparison (tests only)
need valgrind valgrind          # instruction and lock counts (benchmark harness)
need strace strace              # futex counts (benchmark harness)
need gnuplot gnuplot-nox        # the benchmark chart
need g++ g++                    # the standalone library's C++ operators (standalone/new.cc); libFuzzer
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu   # the aarch64 sysroot (tests only)
need qemu-aarch64 qemu-user     # its programs, under user emulation (tests only)
need qemu-system-x86_64 qemu-system-x86   # the rootfs image, booted (tests only)
need cpio cpio                  # packs the rootfs's initramfs
# Linux's user-space headers, copied into the sysroots (x86_64, and aarch64's cross copy)
[ -f /usr/include/linux/version.h ] || need_pkgs+=(linux-libc-dev)
[ -f /usr/aarch64-linux-gnu/include/linux/version.h ] || need_pkgs+=(linux-libc-dev-arm64-cross)
# the benchmark harness preloads Debian's mimalloc and jemalloc
have_lib() { local p; p=$(gcc -print-file-name="$1" 2>/dev/null) && [ "$p" != "$1" ] && [ -e "$p" ]; }
have_lib libmimalloc.so.2 || need_pkgs+=(libmimalloc2.0)
have_lib libjemalloc.so.2 || need_pkgs+=(libjemalloc2)
# the benchmark harness preloads Scudo, which LLVM's compiler-rt package ships
[ -f /usr/lib/llvm-19/lib/clang/19/lib/linux/libclang_rt.scudo_standalone-x86_64.so ] ||
  need_pkgs+=(libclang-rt-19-dev)
# bindgen loads libclang at run time
ls /usr/lib/llvm-*/lib/libclang.so.1 /usr/lib/*/libclang-*.so.1 >/dev/null 2>&1 || need_pkgs+=(libclang1)
if ! command -v cargo >/dev/null 2>&1; then
  echo "ngmalloc: cargo is missing. Install Rust (https://rustup.rs), then re-run make." >&2
  exit 1
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
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
cargo fmt --version >/dev/null 2>&1 || rustup_add rustfmt component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup_add clippy component add clippy
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-unknown-linux-gnu; do
  [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ] || rustup_add "the Rust target $target" target add "$target"
done
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
