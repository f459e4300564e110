#!/usr/bin/env bash
# The hardened allocators the benchmark compares ngmalloc with, as libraries to preload:
#   BUILD/anchors/libmimalloc-secure.so   mimalloc in secure mode (MI_SECURE=4), built by
#                                         the crates.io crate libmimalloc-sys (features
#                                         secure, override), which carries its C sources
#   BUILD/anchors/libsnmalloc-checks.so   snmalloc with every client check
#                                         (SNMALLOC_CHECK_CLIENT), its malloc shim compiled
#                                         from the sources the crate snmalloc-sys carries
# Scudo needs no build: Debian's libclang-rt-19-dev ships it (bench/harness.py finds it).
# Versions are pinned; a re-run with nothing changed returns at once.
# Usage: bench/anchors.sh BUILD
set -eu
build=$(cd "${1:?usage: bench/anchors.sh BUILD}" && pwd)
out=$build/anchors
work=$out/work
MIMALLOC_SYS=0.1.49
SNMALLOC_SYS=0.3.8
stamp=$out/stamp
want="$MIMALLOC_SYS $SNMALLOC_SYS $(sha256sum "$0" | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$out/libmimalloc-secure.so" ] &&
  [ -f "$out/libsnmalloc-checks.so" ]; then
  exit 0
fi
command -v g++ >/dev/null || { echo "anchors: g++ is missing. Run: sudo apt-get install -y g++" >&2; exit 1; }
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<TOML
[package]
name = "ngmalloc-bench-anchors"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "src/lib.rs"
[dependencies]
libmimalloc-sys = { version = "=$MIMALLOC_SYS", features = ["secure", "override"] }
snmalloc-sys = { version = "=$SNMALLOC_SYS", default-features = false }
[workspace]
TOML
echo 'extern crate libmimalloc_sys;' >"$work/src/lib.rs"
export CARGO_TARGET_DIR=$work/target
# mimalloc: the -sys crate's build script compiles it with MI_SECURE and the malloc
# override; its static library becomes a shared one with every symbol kept
cargo build -q --release --manifest-path "$work/Cargo.toml" -p libmimalloc-sys
mi=$(find "$work/target/release/build" -path '*libmimalloc-sys-*/out/libmimalloc.a' | head -1)
[ -n "$mi" ] || { echo "anchors: libmimalloc-sys built no libmimalloc.a" >&2; exit 1; }
gcc -shared -o "$out/libmimalloc-secure.so" -Wl,--whole-archive "$mi" -Wl,--no-whole-archive -pthread
# snmalloc: the sources come with the crate (cargo fetch); its shim built as snmalloc's
# CMake builds libsnmallocshim-checks.so on Linux
cargo fetch -q --manifest-path "$work/Cargo.toml"
src=$(cargo metadata -q --format-version 1 --manifest-path "$work/Cargo.toml" |
  python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="snmalloc-sys"))')
sn=$src/snmalloc/src
flags=(-std=c++20 -O3 -fPIC -fvisibility=hidden -fomit-frame-pointer -ftls-model=initial-exec -mcx16
  -fno-exceptions -DNDEBUG -DSNMALLOC_USE_PTHREAD_DESTRUCTORS -DSNMALLOC_CHECK_CLIENT
  -DSNMALLOC_CHECK_LOADS=false -DSNMALLOC_PAGEID=false -DSNMALLOC_HAS_LINUX_FUTEX_H
  -DSNMALLOC_HAS_LINUX_RANDOM_H -DSNMALLOC_USE_WAIT_ON_ADDRESS=1
  '-DSNMALLOC_EXPORT=__attribute__((visibility("default")))' -I"$sn")
g++ "${flags[@]}" -c "$sn/snmalloc/override/malloc.cc" -o "$work/sn-malloc.o"
g++ "${flags[@]}" -c "$sn/snmalloc/override/new.cc" -o "$work/sn-new.o"
# linked as C: the shim needs no C++ library
gcc -shared -o "$out/libsnmalloc-checks.so" "$work/sn-malloc.o" "$work/sn-new.o" -pthread
echo "$want" >"$stamp"
