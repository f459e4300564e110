#!/usr/bin/env bash
# A new Rust project that follows the README's three steps (Use it from Rust): built for
# the gnu and musl targets, run, and proven served by ngmalloc (a wrong layout given to
# dealloc stops it with SIGILL, which no other allocator does).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CARGO=${CARGO:-cargo}
cd "$work" && "$CARGO" new -q --vcs none hello || exit 1
cd hello || exit 1
# step 1: the dependency
printf 'ngmalloc = { path = "%s/global-allocator" }\n' "$root" >> Cargo.toml
# step 2: the global allocator (and a program that uses the heap)
cat > src/main.rs <<'RS'
#[global_allocator]
static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;

fn main() {
    let v: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let t = std::thread::spawn(move || v.iter().map(|s| s.len()).sum::<usize>());
    let total = t.join().unwrap();
    println!("{total}");
    if std::env::args().nth(1).as_deref() == Some("wrong-layout") {
        let l = std::alloc::Layout::from_size_align(24, 8).unwrap();
        // a deliberate misuse: freed with another size than it was allocated with
        // (black_box: the compiler may drop an allocation nothing uses)
        let p = std::hint::black_box(unsafe { std::alloc::alloc(l) });
        unsafe { std::alloc::dealloc(p, std::alloc::Layout::from_size_align(40, 8).unwrap()) };
        println!("the wrong layout was not caught");
    }
}
RS
fail=0
for target in x86_64-unknown-linux-gnu x86_64-unknown-linux-musl; do
  # step 3: build
  if ! "$CARGO" build -q --release --target "$target"; then
    echo "FAIL $target: cargo build"; fail=1; continue
  fi
  bin=target/$target/release/hello
  out=$("$bin")
  if [ "$out" = 38890 ]; then echo "ok   $target: runs ($(file -b "$bin" | cut -d, -f1))"
  else echo "FAIL $target: printed '$out', expected 38890"; fail=1; fi
  { "$bin" wrong-layout >/dev/null 2>&1; } 2>/dev/null
  rc=$?
  if [ $rc = 132 ]; then echo "ok   $target: served by ngmalloc (a wrong layout in dealloc: SIGILL)"
  else echo "FAIL $target: a wrong layout in dealloc gave exit status $rc, not SIGILL (132)"; fail=1; fi
done
exit $fail
