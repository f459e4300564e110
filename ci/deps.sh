#!/usr/bin/env bash
# Check the tools the build and the tests need; install missing Debian packages when
# running as root, else stop with the exact command to run.
set -eu
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need cc gcc
need gcc gcc
need ld binutils
need objcopy binutils
need ar binutils
need nm binutils
need size binutils
need python3 python3
need git git
need make make
if ! command -v cargo >/dev/null 2>&1; then
  echo "ngmalloc: cargo is missing. Install Rust (https://rustup.rs), then re-run make." >&2
  exit 1
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ngmalloc: installing ${pkgs[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "ngmalloc: missing tools. Run: sudo apt-get install -y ${pkgs[*]}" >&2
    exit 1
  fi
fi
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$c" >/dev/null
    else
      echo "ngmalloc: cargo $c is missing. Run: rustup component add $c" >&2
      exit 1
    fi
  fi
done
