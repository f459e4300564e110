#!/usr/bin/env bash
# The multithreaded stress (tests/stress.rs: cross-thread frees, realloc, thread exit and
# fork) built with ThreadSanitizer: nightly Rust, std rebuilt with the sanitizer so its own
# synchronisation is seen (and unwinding, as test harnesses want: one std for all). Any
# report fails the run (halt_on_error).
set -eu
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/tsan CARGO_PROFILE_DEV_PANIC=unwind \
  cargo +nightly test -q -Zbuild-std --target "$host" -p ngmalloc-core --test stress
