#!/usr/bin/env bash
# Build BusyBox 1.35.0 (Debian's source package, checksummed) statically against a musl
# sysroot: its defconfig, static, less tc (see below).
# Usage: real-software/busybox.sh SYSROOT OUT-DIR  (writes OUT-DIR/busybox, keeps the build
# tree in OUT-DIR/src, where the testsuite runs). A no-op when nothing changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
begin "$@"
ver=1.35.0
fetch "BusyBox $ver" busybox 1:1.35.0-4+deb12u1 bookworm "busybox_$ver.orig.tar.bz2" \
  faeeb244c35a348a334f4a59e44626ee870fb07b6884d68c10ae8bc19f83a694 \
  "https://busybox.net/downloads/busybox-$ver.tar.bz2"
unpack busybox
mk() { make -s CC="$S/bin/ngmalloc-cc" HOSTCC=gcc "$@"; }
mk defconfig >/dev/null
# static; tc needs kernel headers' CBQ, removed in Linux 6.8 (off, as Alpine has it);
# the rest is defconfig
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' \
  -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' .config
mk oldconfig </dev/null >/dev/null
mk -j"$(nproc)" busybox >build.log 2>&1 || { tail -30 build.log >&2; die "build failed (log: $out/src/build.log)"; }
finish busybox
