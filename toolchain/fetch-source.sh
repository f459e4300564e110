#!/usr/bin/env bash
# Fetch a source tarball and check it: first as a file of Debian's source package, with apt
# in a private state directory (build/apt-state; the system's apt configuration is not
# changed; deb-src entries derived from the Debian mirrors the system is configured with),
# else from the upstream URL. Either way DEST is written only if it matches SHA256.
#
# Usage: toolchain/fetch-source.sh PACKAGE VERSION SUITE FILE SHA256 URL DEST
#   e.g.  toolchain/fetch-source.sh lua5.4 5.4.4-3+deb12u1 bookworm lua5.4_5.4.4.orig.tar.gz \
#           164c78...bf61 https://www.lua.org/ftp/lua-5.4.4.tar.gz build/dl/lua-5.4.4.tar.gz
# Exit status: 0 when DEST was written; 1 when neither source could be fetched; 3 when
# what was fetched does not match SHA256 (nothing is written then).
set -euo pipefail
[ $# = 7 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
pkg=$1 ver=$2 suite=$3 file=$4 sha=$5 url=$6 dest=$7
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$(dirname "$dest")"
part="$dest.part"
rm -f "$part"

from_debian() {
  command -v apt-get >/dev/null || return 1
  local st="$root/build/apt-state" uris u list
  mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$st/src/$pkg"
  uris=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | sed 's|/*[[:space:]]*$||' | sort -u || true)
  [ -n "$uris" ] || uris=http://deb.debian.org/debian
  list="$st/sources-$suite.list"
  : >"$list"
  for u in $uris; do
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $u $suite main" >>"$list"
  done
  local opts=(-o "Dir::Etc::SourceList=$list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  echo "fetching Debian's $pkg $ver source package ($suite)" >&2
  apt-get "${opts[@]}" -qq update >/dev/null 2>&1 || return 1
  # that version, else the suite's current one: a point release replaces the Debian
  # revision, while the upstream tarball (FILE, checked below) stays the same
  # (only FILE is needed: a mirror that lacks the package's other files still serves)
  (cd "$st/src/$pkg" && { apt-get "${opts[@]}" -qq source --download-only "$pkg=$ver" >/dev/null 2>&1 ||
    apt-get "${opts[@]}" -qq source --download-only "$pkg" >/dev/null 2>&1 || [ -f "$file" ]; }) || return 1
  [ -f "$st/src/$pkg/$file" ] || { echo "the $pkg source package has no $file" >&2; return 1; }
  cp "$st/src/$pkg/$file" "$part"
}

from_upstream() {
  echo "fetching $url" >&2
  if command -v curl >/dev/null; then curl -fsSL -o "$part" "$url"
  elif command -v wget >/dev/null; then wget -q -O "$part" "$url"
  else return 1; fi
}

from_debian || from_upstream || { rm -f "$part"; exit 1; }
if [ "$(sha256sum "$part" | cut -d' ' -f1)" != "$sha" ]; then
  rm -f "$part"
  exit 3
fi
mv "$part" "$dest"
