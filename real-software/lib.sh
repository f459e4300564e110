# Shared by real-software/*.sh: fetch a Debian source package's upstream tarball (checked
# against its sha256), and a build stamp so that an unchanged build is a no-op.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }

# fetch NAME DEBIAN-PACKAGE DEBIAN-VERSION SUITE ORIG-FILE SHA256 UPSTREAM-URL: sets $tarball
fetch() {
  tarball=$root/build/dl/$(basename "$7")
  if [ -f "$tarball" ] && [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$6" ]; then
    return 0
  fi
  local rc=0
  "$root/toolchain/fetch-source.sh" "$2" "$3" "$4" "$5" "$6" "$7" "$tarball" || rc=$?
  case $rc in
  0) ;;
  3) die "the downloaded $1 does not match its sha256 ($6): refusing to build" ;;
  *) die "could not obtain $1: no Debian source package ($2) and no download ($7)" ;;
  esac
}

# begin SYSROOT OUT-DIR: sets $S and $out (made)
begin() {
  S=$(realpath "$1")
  out=$(mkdir -p "$2" && realpath "$2")
  [ -x "$S/bin/ngmalloc-cc" ] || die "no sysroot at $S (make sysroot)"
}

# unpack PROGRAM: exit at once if $out/PROGRAM was built from this $tarball, sysroot and
# script; else unpack $tarball afresh into $out/src and enter it
unpack() {
  stamp=$(cat "$tarball" "$S/.stamp" "$0" | sha256sum | cut -d' ' -f1)
  if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] && [ -x "$out/$1" ]; then
    exit 0
  fi
  rm -rf "$out/src" "$out/$1" "$out/.stamp"
  mkdir -p "$out/src"
  tar -xf "$tarball" -C "$out/src" --strip-components=1
  cd "$out/src"
  echo "$(basename "$0" .sh): building $1 against $S" >&2
}

# finish PROGRAM: keep the built program and stamp the build
finish() {
  cp "$1" "$out/$1"
  echo "$stamp" >"$out/.stamp"
}
