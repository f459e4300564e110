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

# up_to_date OUT-DIR FILE...: whether OUT-DIR/.stamp matches FILE...'s contents (and the
# calling script's); else `stamp` is what to write when the build is done
up_to_date() {
  local dir=$1
  shift
  stamp=$(cat "$@" "$0" | sha256sum | cut -d' ' -f1)
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]
}
