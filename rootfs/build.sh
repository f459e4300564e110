#!/usr/bin/env bash
# The test image: an initramfs whose every program is static on ngmalloc's musl sysroot:
# BusyBox 1.35.0 (Debian's source, real-software/busybox.sh), the project's C tests and
# the attack suite, with rootfs/init as /init. Packed without root (no device nodes).
# Usage: rootfs/build.sh BUILD-DIR SYSROOT   -> BUILD-DIR/rootfs/initramfs.cpio.gz
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "$1")
S=$(realpath "$2")
die() { echo "rootfs: $*" >&2; exit 1; }
command -v cpio >/dev/null || die "cpio is missing. Run: sudo apt-get install -y cpio"
"$root/real-software/busybox.sh" "$S" "$build/real/busybox-ngmalloc"
tree=$build/rootfs/tree
rm -rf "$tree"
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,root,tests/attacks}
cp "$build/real/busybox-ngmalloc/busybox" "$tree/bin/busybox"
cp "$root/rootfs/init" "$tree/init"
chmod 755 "$tree/init"
cc="$S/bin/ngmalloc-cc"
c=$root/c-tests
t=$tree/tests
"$cc" -O2 -static -o "$t/semantics" "$c/semantics.c"
"$cc" -O2 -static-pie -o "$t/semantics-pie" "$c/semantics.c"
"$cc" -O2 -static -o "$t/guards" "$c/guards.c"
"$cc" -O2 -static -o "$t/mlockall" "$c/mlockall.c"
"$cc" -O2 -static -o "$t/malloc-only" "$c/malloc-only.c"
"$cc" -O2 -std=c11 -static -o "$t/oom" "$c/oom.c"
# the attack programs as ci/attacks.sh builds them (-O0); the expected outcomes with them,
# but the C++ ones' (the image has no C++ library)
for f in "$root"/attacks/*.c; do
  "$cc" -O0 -w -static -I"$root/attacks" -o "$t/attacks/$(basename "$f" .c)" "$f"
done
while read -r name want; do
  case "$name" in '' | '#'*) continue ;; esac
  if [ -e "$root/attacks/$name.c" ]; then printf '%s %s\n' "$name" "$want"; fi
done <"$root/attacks/expected.txt" >"$t/attacks/expected.txt"
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$build/rootfs/initramfs.cpio.gz"
echo "rootfs: $build/rootfs/initramfs.cpio.gz ($(du -k "$build/rootfs/initramfs.cpio.gz" | cut -f1) KiB)"
