#!/usr/bin/env bash
# Build GNU awk 5.2.1 (Debian's source package, checksummed) statically against a musl
# sysroot: no NLS, readline, MPFR or loadable extensions (a static program cannot load
# them). Its test suite is `make check` in the build tree.
# Usage: real-software/gawk.sh SYSROOT OUT-DIR  (writes OUT-DIR/gawk, keeps the build tree
# in OUT-DIR/src). A no-op when nothing changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
begin "$@"
ver=5.2.1
fetch "gawk $ver" gawk 1:5.2.1-2 bookworm "gawk_$ver.orig.tar.xz" \
  2337a0283b180ec1b9c727973a34781c6478b3ae9bcbdcca0a4dc49861d75a65 \
  "https://ftp.gnu.org/gnu/gawk/gawk-$ver.tar.xz"
unpack gawk
./configure --host="$(uname -m)-linux-musl" CC="$S/bin/ngmalloc-cc" CFLAGS=-O2 LDFLAGS=-static \
  --disable-nls --disable-extensions --without-readline --without-mpfr >configure.log 2>&1 ||
  { tail -20 configure.log >&2; die "configure failed (log: $out/src/configure.log)"; }
# the program only: Debian's tarball leaves out the manual's sources (GFDL), so doc/ fails
{ make -j"$(nproc)" -C support && make -j"$(nproc)" gawk; } >build.log 2>&1 || { tail -30 build.log >&2; die "build failed (log: $out/src/build.log)"; }
finish gawk
