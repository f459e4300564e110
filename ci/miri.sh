#!/usr/bin/env bash
# Miri with strict provenance: the core's unit tests and the heap on an interpreter-
# friendly backend (tests/miri.rs), with a reduced step count.
set -eu
cd "$(dirname "$0")/.."
# A heap keeps its meta areas and cached mappings for the life of the process: at exit
# they are leaks to Miri, by design.
export MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-ignore-leaks ${MIRIFLAGS:-}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/miri
cargo +nightly miri setup -q >/dev/null 2>&1 || cargo +nightly miri setup
cargo +nightly miri test -q -p ngmalloc-core --lib --test miri
