#!/usr/bin/env bash
# The attack suite's table in docs/hardening.md is the one ci/attacks.sh writes on each
# run (BUILD/attacks.md): check that they agree, or (--write) copy it in.
# Usage: ci/docs-tables.sh BUILD [--write]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
table="${1:?usage: ci/docs-tables.sh BUILD [--write]}/attacks.md"
doc=$root/docs/hardening.md
[ -f "$table" ] || { echo "no $table: run ci/attacks.sh (make test) first" >&2; exit 1; }
begin='<!-- attack-table:'
end='<!-- /attack-table -->'
current() {
  awk -v b="$begin" -v e="$end" 'index($0, e) == 1 { on = 0 } on { print } index($0, b) == 1 { on = 1 }' "$doc"
}
if [ "${2:-}" = --write ]; then
  tmp=$(mktemp)
  awk -v b="$begin" -v e="$end" -v t="$table" '
    index($0, b) == 1 { print; while ((getline l < t) > 0) print l; skip = 1; next }
    index($0, e) == 1 { skip = 0 }
    !skip' "$doc" >"$tmp"
  mv "$tmp" "$doc"
  echo "docs/hardening.md: attack table copied from $table"
elif diff -u <(current) "$table"; then
  echo "docs/hardening.md's attack table matches $table"
else
  echo "docs/hardening.md's attack table differs from this run's. Run: ci/docs-tables.sh ${1} --write" >&2
  exit 1
fi
