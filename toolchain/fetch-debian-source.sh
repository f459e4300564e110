#!/usr/bin/env bash
# Fetch one file of a Debian source package (e.g. its .orig tarball) with apt, in a private
# state directory (build/apt-state): the system's apt configuration is not changed. The
# deb-src entries are derived from the Debian mirrors the system is configured with.
# The caller checks the file's sha256.
#
# Usage: toolchain/fetch-debian-source.sh PACKAGE VERSION SUITE FILE DEST
#   e.g.  toolchain/fetch-debian-source.sh lua5.4 5.4.4-3+deb12u1 bookworm lua5.4_5.4.4.orig.tar.gz build/dl/lua-5.4.4.tar.gz
# Exit status: 0 when DEST was written, 1 when apt could not fetch it.
set -euo pipefail
[ $# = 5 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
pkg=$1 ver=$2 suite=$3 file=$4 dest=$5
root=$(cd "$(dirname "$0")/.." && pwd)
command -v apt-get >/dev/null || exit 1
st="$root/build/apt-state"
mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$st/src/$pkg"
uris=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
  grep -oE 'https?://[^ ]+/debian/?( |$)' | sed 's|/*[[:space:]]*$||' | sort -u || true)
[ -n "$uris" ] || uris=http://deb.debian.org/debian
list="$st/sources-$suite.list"
: >"$list"
for u in $uris; do
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $u $suite main" >>"$list"
done
opts=(-o "Dir::Etc::SourceList=$list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)
echo "fetching Debian's $pkg $ver source package ($suite)" >&2
apt-get "${opts[@]}" -qq update >/dev/null 2>&1 || exit 1
(cd "$st/src/$pkg" && apt-get "${opts[@]}" -qq source --download-only "$pkg=$ver" >/dev/null 2>&1) || exit 1
[ -f "$st/src/$pkg/$file" ] || { echo "the $pkg source package has no $file" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
cp "$st/src/$pkg/$file" "$dest.part" && mv "$dest.part" "$dest"
