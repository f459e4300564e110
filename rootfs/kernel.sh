#!/usr/bin/env bash
# Debian's packaged kernel for booting the rootfs: the package linux-image-amd64 depends on
# (bookworm: a 6.1 kernel, without MADV_GUARD_INSTALL), fetched with `apt-get download`,
# which checks it against the archive's signed indices; only its /boot/vmlinuz-* is kept.
# Usage: rootfs/kernel.sh OUT-FILE   (a no-op when OUT-FILE is there)
set -euo pipefail
out=$1
[ -s "$out" ] && exit 0
die() { echo "kernel: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs Debian's apt-get and dpkg-deb"
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
if [ -z "$pkg" ]; then
  [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 &&
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1)
  [ -n "$pkg" ] || die "apt knows no linux-image-amd64. Run: sudo apt-get update"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "kernel: fetching Debian's $pkg" >&2
(cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
mkdir -p "$(dirname "$out")"
cp "$tmp"/boot/vmlinuz-* "$out.part" && mv "$out.part" "$out"
echo "kernel: $(basename "$tmp"/boot/vmlinuz-*)" >&2
