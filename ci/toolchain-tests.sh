#!/usr/bin/env bash
# The toolchain's promises: a re-run with everything present is fast and changes nothing;
# a tarball that fails its checksum is refused with a clear message; configure says what
# is missing (here: cargo). Needs the default sysroot built already.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib.sh"
MUSL=${MUSL:-1.2.6}
S=build/sysroot-musl-$MUSL

touch "$work/mark"
start=$(date +%s%N)
out=$(toolchain/build-sysroot.sh --musl $MUSL)
ms=$((($(date +%s%N) - start) / 1000000))
changed=$(find "$S" -newer "$work/mark" | head -5)
result $(echo "$out" | grep -q "is up to date" && [ -z "$changed" ] && [ $ms -lt 10000 ]; echo $?) \
  "re-running build-sysroot is a no-op (${ms} ms, nothing changed)"

head -c 100000 /dev/urandom >"$work/musl-$MUSL.tar.gz"
out=$(toolchain/build-sysroot.sh --musl $MUSL --tarball "$work/musl-$MUSL.tar.gz" --out "$work/s" 2>&1)
r=$?
result $([ $r != 0 ] && echo "$out" | grep -q "does not match the sha256"; echo $?) \
  "a tarball with the wrong checksum is refused: $(echo "$out" | tail -1)"

out=$(toolchain/build-sysroot.sh --musl 9.9.9 2>&1)
result $([ $? != 0 ] && echo "$out" | grep -q "unsupported musl version"; echo $?) "an unknown musl version is refused"
out=$(toolchain/build-sysroot.sh --arch riscv64 2>&1)
result $([ $? != 0 ] && echo "$out" | grep -q "unsupported --arch riscv64"; echo $?) "an unsupported --arch is refused"
out=$(CROSS_CC=no-such-gcc toolchain/build-sysroot.sh --arch aarch64 2>&1)
result $([ $? != 0 ] && echo "$out" | grep -q "no C compiler no-such-gcc for aarch64. Run: sudo apt-get install"; echo $?) \
  "a missing cross compiler stops with the command to run: $(echo "$out" | tail -1)"

mkdir "$work/conf" && cd "$work/conf"
cargo_dir=$(dirname "$(command -v cargo)")
path=$(echo "$PATH" | tr ':' '\n' | grep -vx "$cargo_dir" | paste -sd:)
out=$(PATH="$path" "$root/build/musl-src-$MUSL/configure" --with-malloc=ngmalloc 2>&1)
r=$?
result $([ $r != 0 ] && echo "$out" | grep -q "cargo not found"; echo $?) \
  "configure without cargo stops: $(echo "$out" | tail -1)"
out=$("$root/build/musl-src-$MUSL/configure" --with-malloc=ngmalloc --with-ngmalloc-src=/nonexistent 2>&1)
result $([ $? != 0 ] && echo "$out" | grep -q "ngmalloc source not found"; echo $?) \
  "configure with a wrong source path stops: $(echo "$out" | tail -1)"
cd "$root"

summary "toolchain"
