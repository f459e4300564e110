#!/usr/bin/env bash
# A new Rust project that follows the README's three steps (Use it from Rust): built for
# the gnu and musl targets, run, and proven served by ngmalloc (a wrong layout given to
# dealloc stops it with SIGILL, which no other allocator does). Then a project with C code
# that calls malloc: on glibc, Rust's bundled musl and the ngmalloc sysroot.
# Usage: ci/rust-crate.sh  (after make: the sysroot in build/sysroot-musl-$MUSL)
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

# C code in the same program: the C side's malloc is its libc's (glibc's; Rust's bundled
# musl's; on the ngmalloc sysroot, ngmalloc's C heap) and the Rust side's is the crate's.
# Memory crosses both ways and goes back to the side that allocated it.
cd "$work" && "$CARGO" new -q --vcs none mixed || exit 1
cd mixed || exit 1
printf 'ngmalloc = { path = "%s/global-allocator" }\n' "$root" >> Cargo.toml
mkdir -p c
cat > c/side.c <<'C'
#include <stdlib.h>
#include <string.h>
/* C allocates, Rust reads and hands it back */
char *c_repeat(char ch, size_t n) { char *p = malloc(n + 1); if (p) { memset(p, ch, n); p[n] = 0; } return p; }
void c_free(char *p) { free(p); }
/* C reads memory Rust allocated */
unsigned long c_sum(const unsigned char *p, size_t n) { unsigned long s = 0; while (n--) s += *p++; return s; }
C
cat > build.rs <<'RS'
// compiles c/side.c with $NGM_CC into a static library (no cc crate: nothing to download)
fn main() {
    let out = std::env::var("OUT_DIR").unwrap();
    let cc = std::env::var("NGM_CC").unwrap_or_else(|_| "cc".into());
    let obj = format!("{out}/side.o");
    let ok = std::process::Command::new(&cc).args(["-O2", "-fPIC", "-c", "c/side.c", "-o", &obj]).status().unwrap();
    assert!(ok.success(), "{cc} failed");
    let ok = std::process::Command::new("ar").args(["crs", &format!("{out}/libside.a"), &obj]).status().unwrap();
    assert!(ok.success());
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static=side");
    println!("cargo:rerun-if-changed=c/side.c");
    println!("cargo:rerun-if-env-changed=NGM_CC");
}
RS
cat > src/main.rs <<'RS'
#[global_allocator]
static GLOBAL: ngmalloc::NgMalloc = ngmalloc::NgMalloc;

unsafe extern "C" {
    fn c_repeat(ch: u8, n: usize) -> *mut u8;
    fn c_free(p: *mut u8);
    fn c_sum(p: *const u8, n: usize) -> u64;
}

fn main() {
    let total: u64 = std::thread::scope(|s| {
        let ts: Vec<_> = (0..4u64)
            .map(|t| {
                s.spawn(move || {
                    let mut sum = 0;
                    for i in 0..20_000usize {
                        let n = 1 + (i * 13 + t as usize) % 700;
                        // Rust's memory, read by C, freed by Rust
                        let v = vec![(i % 251) as u8; n];
                        sum += unsafe { c_sum(v.as_ptr(), v.len()) };
                        drop(v);
                        // C's memory, read by Rust, freed by C
                        let p = unsafe { c_repeat(b'x', n) };
                        assert!(!p.is_null());
                        let c = unsafe { std::slice::from_raw_parts(p, n) };
                        sum += c.iter().map(|&b| b as u64).sum::<u64>();
                        unsafe { c_free(p) };
                    }
                    sum
                })
            })
            .collect();
        ts.into_iter().map(|t| t.join().unwrap()).sum()
    });
    println!("{total}");
    match std::env::args().nth(1).as_deref() {
        // each side's allocator, told apart by how it reacts to a double free
        Some("c-double-free") => unsafe {
            let p = c_repeat(b'y', 24);
            c_free(p);
            c_free(std::hint::black_box(p));
        },
        Some("rust-wrong-layout") => unsafe {
            let l = std::alloc::Layout::from_size_align(24, 8).unwrap();
            let p = std::hint::black_box(std::alloc::alloc(l));
            std::alloc::dealloc(p, std::alloc::Layout::from_size_align(40, 8).unwrap());
        },
        _ => {}
    }
}
RS
want=$(python3 -c "
s=0
for t in range(4):
  for i in range(20000):
    n=1+(i*13+t)%700; s+=(i%251)*n+ord('x')*n
print(s)")
sysroot=$root/build/sysroot-musl-${MUSL:-1.2.6}
# signal of `bin ARG` (0 if none)
sig() { { "$@" >/dev/null 2>&1; } 2>/dev/null; local rc=$?; [ $rc -gt 128 ] && echo $((rc - 128)) || echo 0; }
mixed() { # label, C compiler, expected C double-free signal, cargo arguments...
  local label=$1 cc=$2 csig=$3; shift 3
  if ! NGM_CC=$cc "$CARGO" build -q --release "$@"; then echo "FAIL mixed, $label: cargo build"; fail=1; return; fi
  local bin
  bin=$(find target -path '*release/mixed' -newer build.rs | head -1)
  local out; out=$("$bin")
  if [ "$out" = "$want" ]; then echo "ok   mixed C and Rust, $label: memory crosses both ways"
  else echo "FAIL mixed, $label: printed '$out', expected $want"; fail=1; fi
  local r c
  r=$(sig "$bin" rust-wrong-layout); c=$(sig "$bin" c-double-free)
  if [ "$r" = 4 ] && [ "$c" = "$csig" ]; then
    echo "ok   mixed C and Rust, $label: Rust's heap is ngmalloc's crate (SIGILL), C's a double free gives signal $c"
  else echo "FAIL mixed, $label: Rust wrong layout signal $r (want 4), C double free signal $c (want $csig)"; fail=1; fi
}
# glibc aborts a double free (SIGABRT, 6); Rust's bundled musl (mallocng) faults (SIGSEGV,
# 11); ngmalloc in the sysroot's libc traps (SIGILL, 4)
mixed "gnu (glibc's malloc)" cc 6 --target x86_64-unknown-linux-gnu
rm -rf target
mixed "musl (Rust's bundled musl)" x86_64-linux-musl-gcc 11 --target x86_64-unknown-linux-musl
rm -rf target
if [ -x "$sysroot/bin/ngmalloc-cc" ]; then
  mixed "the ngmalloc sysroot (both ngmalloc)" "$sysroot/bin/ngmalloc-cc" 4 \
    --config "$sysroot/cargo/config.toml" --target x86_64-unknown-linux-musl
else
  echo "FAIL mixed: no sysroot at $sysroot (run: make sysroot)"; fail=1
fi
exit $fail
