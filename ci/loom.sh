#!/usr/bin/env bash
# The model check of the lock-free free path (tests/loom.rs) with loom: every interleaving
# of two freeing threads and an allocating one, up to 3 preemptions. A target directory of
# its own: `--cfg loom` changes every crate's build.
set -eu
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/loom \
  cargo test --release -q -p ngmalloc-core --test loom
