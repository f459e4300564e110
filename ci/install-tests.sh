#!/usr/bin/env bash
# `make install` and `make install-sysroot` as a user (or a packager) uses them: staged
# with DESTDIR, then the whole prefix moved elsewhere, and used from there: the library
# through pkg-config, the sysroot's wrapper through its link in PREFIX/bin (C static and
# dynamic), and a Rust crate with C code (cc-rs) through the sysroot's cargo config, whose
# C must be compiled by the moved sysroot's wrapper and whose heaps must be ngmalloc's.
# Usage: ci/install-tests.sh BUILD
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: ci/install-tests.sh BUILD}" && pwd)
CARGO=${CARGO:-cargo}
MUSL=${MUSL:-1.2.6}
# (outside the repository: a crate made inside it would be taken for a workspace member)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$root/ci/lib.sh"
# check DESCRIPTION COMMAND...: the command's status is the result
check() {
  local what=$1
  shift
  "$@"
  result $? "$what"
}

make -s -C "$root" install install-sysroot BUILD="$build" DESTDIR="$work/stage" PREFIX=/opt/ngm \
  >"$work/install.log" 2>&1 || { tail -20 "$work/install.log"; result 1 "make install"; exit 1; }
mv "$work/stage/opt/ngm" "$work/moved"
P=$work/moved
check "installed: library, pkg-config file, sysroot, ngmalloc-cc in bin" \
  test -f "$P/lib/libngmalloc.so" -a -f "$P/lib/libngmalloc.a" -a -f "$P/lib/pkgconfig/ngmalloc.pc" \
  -a -x "$P/bin/ngmalloc-cc" -a -f "$P/lib/ngmalloc/sysroot-musl-$MUSL/lib/libc.a"
check "nothing installed names the build directory" \
  sh -c "! grep -rlI '$build' '$P'"

# the library: pkg-config (relocated by the .pc file's place), then plain -lngmalloc
export PKG_CONFIG_PATH=$P/lib/pkgconfig
flags=$(pkg-config --define-prefix --libs ngmalloc)
check "pkg-config --libs ngmalloc names the moved library ($flags)" \
  sh -c "case '$flags' in *'-L$P/lib'*-lngmalloc*) true ;; *) false ;; esac"
cc -O2 -pthread -DNGM_STANDALONE -o "$work/semantics" "$root/c-tests/semantics.c" $flags \
  -Wl,-rpath,"$P/lib"
out=$(NGMALLOC_REPORT="$work/report" "$work/semantics" 2>&1)
rc=$?
check "a C program linked with \$(pkg-config --libs ngmalloc): C semantics pass ($(tail -1 <<<"$out"))" \
  test $rc = 0
check "...and ngmalloc served it (NGMALLOC_REPORT)" grep -q '^ngmalloc pid=' "$work/report"

# the sysroot, through the link in bin
cat >"$work/hello.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
int main(void) { char *p = malloc(64); if (!p) return 1; snprintf(p, 64, "hello"); puts(p); free(p); return 0; }
C
for mode in -static ""; do
  "$P/bin/ngmalloc-cc" -O2 $mode -o "$work/hello$mode" "$work/hello.c" && out=$("$work/hello$mode")
  check "moved sysroot: C ${mode:-dynamic} program builds and runs" test "$out" = hello
done
check "moved sysroot: the dynamic program's interpreter is the moved loader" \
  sh -c "readelf -l '$work/hello' | grep -q 'interpreter: $P/lib/ngmalloc/sysroot-musl-$MUSL/lib/ld-musl'"
check "moved sysroot: the static program says it is ngmalloc's (readelf -p .comment)" \
  sh -c "readelf -p .comment '$work/hello-static' | grep -q 'ngmalloc .*(musl $MUSL'"
check "moved sysroot: the program has a build ID" sh -c "readelf -n '$work/hello-static' | grep -q 'Build ID'"
check "ngmalloc-cc --version says the commit, musl version and hardening" \
  sh -c "'$P/bin/ngmalloc-cc' --version | head -1 | grep -q '^ngmalloc-cc: ngmalloc .*(musl $MUSL, x86_64, hardening: '"

# a Rust crate with C code, built with the moved sysroot's cargo config
S=$P/lib/ngmalloc/sysroot-musl-$MUSL
(cd "$work" && "$CARGO" new -q --vcs none withc) || exit 1
cd "$work/withc" || exit 1
printf '\n[build-dependencies]\ncc = "1"\n' >>Cargo.toml
mkdir -p c
cat >c/side.c <<'C'
#include <stdlib.h>
char *c_alloc(size_t n) { return malloc(n); }
void c_free(char *p) { free(p); }
C
cat >build.rs <<RS
fn main() {
    let mut b = cc::Build::new();
    b.file("c/side.c");
    // the crate's C is compiled by the sysroot's wrapper (the cargo config's CC_<target>)
    let cc = b.get_compiler().path().to_path_buf();
    assert_eq!(cc, std::path::Path::new("$S/bin/ngmalloc-cc"), "C compiler");
    b.compile("side");
}
RS
cat >src/main.rs <<'RS'
unsafe extern "C" {
    fn c_alloc(n: usize) -> *mut u8;
    fn c_free(p: *mut u8);
}
fn main() {
    let v: Vec<u64> = (0..100_000).collect();
    let p = unsafe { c_alloc(100) };
    assert!(!p.is_null());
    println!("{}", v.iter().sum::<u64>());
    unsafe { c_free(p) };
    if std::env::args().nth(1).as_deref() == Some("double-free") {
        unsafe { c_free(std::hint::black_box(p)) };
    }
}
RS
if "$CARGO" --config "$S/cargo/config.toml" build -q --release --target x86_64-unknown-linux-musl \
  >"$work/cargo.log" 2>&1; then
  bin=target/x86_64-unknown-linux-musl/release/withc
  check "moved sysroot: a Rust crate with C code (cc-rs) builds with the sysroot's wrapper and runs" \
    test "$("$bin")" = 4999950000
  rc=$({ "$bin" double-free >/dev/null 2>&1; echo $?; } 2>/dev/null)
  check "...its C heap is ngmalloc's: a double free traps (SIGILL; got status $rc)" test $rc = 132
  check "...and the binary says so (readelf -p .comment)" sh -c "readelf -p .comment '$bin' | grep -q ngmalloc"
else
  cat "$work/cargo.log"
  result 1 "moved sysroot: a Rust crate with C code builds"
fi
summary install
