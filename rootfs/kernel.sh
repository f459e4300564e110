#!/usr/bin/env bash
# Debian's packaged kernel for booting the rootfs: the package linux-image-amd64 depends on,
# fetched with `apt-get download`, which checks it against the archive's signed indices;
# only its vmlinuz is kept.
#   (no SUITE)  the system's own suite (bookworm: Linux 6.1, without MADV_GUARD_INSTALL)
#   SUITE       that suite's, through a private apt state directory (build/apt-state; the
#               system's apt configuration is not changed), e.g. forky: a 7.x kernel, with
#               guard markers. Newer packages keep vmlinuz in linux-binary-VERSION
#               (/usr/lib/modules/VERSION/vmlinuz), older ones in /boot.
# Usage: rootfs/kernel.sh OUT-FILE [SUITE]   (a no-op when OUT-FILE is there)
set -euo pipefail
out=$1
suite=${2:-}
[ -s "$out" ] && exit 0
root=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "kernel: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs Debian's apt-get and dpkg-deb"
opts=()
if [ -n "$suite" ]; then
  st="$root/build/apt-state/kernel-$suite"
  mkdir -p "$st/lists/partial" "$st/cache/archives/partial"
  uris=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | sed 's|/*[[:space:]]*$||' | sort -u || true)
  [ -n "$uris" ] || uris=http://deb.debian.org/debian
  : >"$st/sources.list"
  for u in $uris; do
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $u $suite main" >>"$st/sources.list"
  done
  opts=(-o "Dir::Etc::SourceList=$st/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root -o APT::Architecture=amd64)
  apt-get "${opts[@]}" -qq update >/dev/null 2>&1 || die "apt-get update of Debian's $suite failed"
fi
depends() { apt-cache "${opts[@]}" depends "$1" 2>/dev/null | sed -n "s/^ *Depends: \($2\)$/\1/p" | head -1; }
pkg=$(depends linux-image-amd64 'linux-image-[0-9].*-amd64')
if [ -z "$pkg" ] && [ -z "$suite" ]; then
  [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && pkg=$(depends linux-image-amd64 'linux-image-[0-9].*-amd64')
fi
[ -n "$pkg" ] || die "apt knows no linux-image-amd64${suite:+ in $suite}. Run: sudo apt-get update"
# the package with the kernel itself: the image, or (newer) the linux-binary it depends on
pkgs=("$pkg")
bin=$(depends "$pkg" 'linux-binary-[0-9].*-amd64')
[ -z "$bin" ] || pkgs+=("$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "kernel: fetching Debian's ${pkgs[*]}${suite:+ ($suite)}" >&2
(cd "$tmp" && apt-get "${opts[@]}" download -qq "${pkgs[@]}" >/dev/null 2>&1) || die "apt-get download ${pkgs[*]} failed"
for deb in "$tmp"/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*/vmlinuz' 2>/dev/null || true
done
k=$(ls "$tmp"/boot/vmlinuz-* "$tmp"/usr/lib/modules/*/vmlinuz 2>/dev/null | head -1 || true)
[ -n "$k" ] || die "no vmlinuz in ${pkgs[*]}"
mkdir -p "$(dirname "$out")"
cp "$k" "$out.part" && mv "$out.part" "$out"
echo "kernel: ${pkg#linux-image-}" >&2
