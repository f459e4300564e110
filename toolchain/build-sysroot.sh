#!/usr/bin/env bash
# Build a musl sysroot whose libc.a, libc.so and dynamic loader use ngmalloc, plus a C
# compiler wrapper and a cargo configuration for ARCH-unknown-linux-musl.
#
# Usage: toolchain/build-sysroot.sh [--musl VERSION] [--arch ARCH] [--tarball FILE] [--out DIR]
#                                   [--malloc ngmalloc|mallocng] [--harden LIST]
#   --musl     1.2.6 (default), 1.2.5 or 1.2.3
#   --arch     x86_64 (default) or aarch64, cross-built with Debian's gcc-aarch64-linux-gnu
#              and Rust's aarch64-unknown-linux-musl; default out dir gets -aarch64
#   --tarball  use this musl release tarball (checked against the known sha256)
#   --out      sysroot directory (default: build/sysroot-musl-VERSION[-mallocng])
#   --malloc   mallocng builds a stock musl the same way, for comparisons
#   --harden   optional mitigations (space- or comma-separated: zero-on-free random-slots
#              quarantine big-guards freed-word string-end canary-room, or all); default
#              out dir gets -hardened
#
# musl's source comes from, in order: --tarball; the download cache (build/dl); Debian's
# source package, fetched with apt into a private state directory (the system's apt
# configuration is not changed); the upstream release URL. Whatever the source, the
# tarball must match its sha256 or the script stops. Re-running with nothing changed is a
# no-op (a stamp records the inputs). Nothing is ever installed outside the sysroot: the
# dynamic loader goes to SYSROOT/lib (--syslibdir), not /lib.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=1.2.6
arch=x86_64
tarball=
out=
malloc=ngmalloc
harden=
while [ $# -gt 0 ]; do
  case "$1" in
  --musl) version=$2; shift 2 ;;
  --arch) arch=$2; shift 2 ;;
  --tarball) tarball=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --malloc) malloc=$2; shift 2 ;;
  --harden) harden=$(echo "$2" | tr ' ' ,); shift 2 ;;
  -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
  *) echo "build-sysroot: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "build-sysroot: $*" >&2; exit 1; }
case "$version" in
1.2.6) sha=d585fd3b613c66151fc3249e8ed44f77020cb5e6c1e635a616d3f9f82460512a; debver=1.2.6-2; suite=forky ;;
1.2.5) sha=a9a118bbe84d8764da0ea0d28b3ab3fae8477fc7e4085d90102b8596fc7c75e4; debver=1.2.5-3.1~deb13u1; suite=trixie ;;
1.2.3) sha=7d5b0b6062521e4627e099e4c9dc8248d32a30285e959b7eecaa780cf8cfd4a4; debver=1.2.3-1; suite=bookworm ;;
*) die "unsupported musl version $version (1.2.6, 1.2.5 or 1.2.3)" ;;
esac
case "$malloc" in ngmalloc|mallocng) ;; *) die "--malloc takes ngmalloc or mallocng" ;; esac
# The C compiler and binutils: the host's for the host's arch (CC may name another gcc),
# else Debian's cross toolchain (CROSS_CC may name another gcc). Missing tools stop the
# script with the command to run.
host_arch=$(uname -m)
case "$arch" in
x86_64|aarch64) ;;
*) die "unsupported --arch $arch (x86_64 or aarch64)" ;;
esac
if [ "$arch" = "$host_arch" ]; then
  cross= cc=${CC:-gcc}
else
  cross=$arch-linux-gnu- cc=${CROSS_CC:-$arch-linux-gnu-gcc}
fi
command -v "$cc" >/dev/null || die "no C compiler $cc for $arch. Run: sudo apt-get install -y gcc-${arch//_/-}-linux-gnu"
# Linux's user-space headers (<linux/*.h>, <asm/*.h>) go into the sysroot too, as with
# musl-cross-make, so that programs such as BusyBox build against it: Debian's package.
if [ "$arch" = "$host_arch" ]; then
  kpkg=linux-libc-dev kinc=/usr/include
else
  kpkg=linux-libc-dev-$([ "$arch" = aarch64 ] && echo arm64 || echo "$arch")-cross kinc=/usr/$arch-linux-gnu/include
fi
dpkg-query -W "$kpkg" >/dev/null 2>&1 || die "Linux headers for $arch are missing. Run: sudo apt-get install -y $kpkg"
target=$arch-unknown-linux-musl
[ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ] || die "the Rust target $target is missing. Run: rustup target add $target"
build="$root/build"
suffix=$([ "$arch" != x86_64 ] && echo "-$arch" || true)$([ "$malloc" = mallocng ] && echo -mallocng || true)$([ -n "$harden" ] && echo -hardened || true)
out=${out:-$build/sysroot-musl-$version$suffix}
mkdir -p "$build/dl" "$out"
out=$(cd "$out" && pwd)
dl="$build/dl/musl-$version.tar.gz"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

# 1. the source tarball, verified
if [ -n "$tarball" ]; then
  [ -f "$tarball" ] || die "no such tarball: $tarball"
  sha_ok "$tarball" || die "$tarball does not match the sha256 of musl $version ($sha)"
  cp "$tarball" "$dl.tmp" && mv "$dl.tmp" "$dl"
elif ! sha_ok "$dl"; then
  rm -f "$dl"
  rc=0
  "$root/toolchain/fetch-source.sh" musl "$debver" "$suite" "musl_$version.orig.tar.gz" "$sha" \
    "https://musl.libc.org/releases/musl-$version.tar.gz" "$dl" || rc=$?
  case $rc in
  0) ;;
  3) die "the downloaded musl $version does not match its sha256 ($sha): refusing to build" ;;
  *) die "could not obtain musl $version: no Debian source package and no download. Get musl-$version.tar.gz yourself and pass --tarball FILE" ;;
  esac
fi

# 2. up to date? The stamp covers the tarball, the patches, the glue, the Rust core and
#    this script; nothing else goes into the sysroot.
inputs() {
  echo "$sha $arch $malloc $harden $("$cc" --version | head -1) $(dpkg-query -W "$kpkg")"
  if [ "$malloc" = ngmalloc ]; then
    (cd "$root" && find musl-patches src musl-object toolchain Cargo.toml Cargo.lock -type f | sort | xargs sha256sum)
  else
    sha256sum "$root/toolchain/build-sysroot.sh"
  fi
}
stamp=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] && [ -f "$out/lib/libc.a" ]; then
  echo "build-sysroot: $out is up to date"
  exit 0
fi

# 3. extract, patch, configure, build, install
# What the sysroot says it is (ngmalloc-cc --version; `readelf -p .comment` of a binary).
# Not an input of the stamp: only a rebuild asks git.
if commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null); then
  git -C "$root" diff --quiet HEAD -- src musl-patches musl-object || commit="$commit+changes"
else
  commit="(no git)"
fi
ident="ngmalloc $commit (musl $version, $arch, $([ "$malloc" = ngmalloc ] && echo "hardening: ${harden:-default}" || echo "stock mallocng"))"

src="$build/musl-src-$version$suffix"
rm -rf "$src" "$out"
mkdir -p "$src" "$out"
tar -xzf "$dl" -C "$src" --strip-components=1
if [ "$malloc" = ngmalloc ]; then
  for p in "$root"/musl-patches/*.patch; do
    patch -s -d "$src" -p1 <"$p" || die "patch $(basename "$p") does not apply to musl $version"
  done
  mkdir -p "$src/src/malloc/ngmalloc"
  cp "$root"/musl-patches/ngmalloc/* "$src/src/malloc/ngmalloc/"
  # which allocator served a binary: glue.c puts this line in its .comment section
  printf '#define NGM_IDENT "%s"\n' "$ident" >"$src/src/malloc/ngmalloc/ident.h"
  ln -s "$root" "$src/src/malloc/ngmalloc/source"
fi
echo "build-sysroot: building musl $version ($arch) with $malloc into $out"
start=$(date +%s)
(
  # a `make install DESTDIR=...` that called this must not stage musl's own install
  unset DESTDIR MAKEFLAGS MFLAGS
  cd "$src"
  ./configure --prefix="$out" --syslibdir="$out/lib" --with-malloc="$malloc" \
    ${harden:+--enable-ngmalloc-hardening="$harden"} \
    --disable-wrapper CC="$cc" ${cross:+--target="$arch-linux-musl" CROSS_COMPILE="$cross"} >"$src/configure.log" 2>&1 ||
    { cat "$src/configure.log" >&2; exit 1; }
  make -j"$(nproc)" >"$src/make.log" 2>&1 || { tail -40 "$src/make.log" >&2; exit 1; }
  make install >>"$src/make.log" 2>&1 || { tail -20 "$src/make.log" >&2; exit 1; }
) || die "building musl failed (logs in $src)"
echo "build-sysroot: musl built in $(($(date +%s) - start)) s"
# the package's top-level header directories (asm from the multiarch directory on the host)
for d in $(dpkg -L "$kpkg" | sed -n "s|^$kinc/\([^/]*\)$|\1|p"); do
  [ -d "$kinc/$d" ] || continue
  case $d in
  *-linux-gnu) [ -d "$kinc/$d/asm" ] && cp -r "$kinc/$d/asm" "$out/include/" ;;
  *) cp -r "$kinc/$d" "$out/include/" ;;
  esac
done
[ -f "$out/include/linux/version.h" ] && [ -d "$out/include/asm" ] || die "no Linux headers copied from $kpkg"

# 4. wrappers, relocatable: each finds the sysroot from where it is, so an installed,
#    moved or copied sysroot works. C: a gcc wrapper with its own specs: musl's, plus
#    -static-pie (rcrt1.o, no interpreter), which musl's specs do not handle. The specs
#    read the sysroot's path from NGMALLOC_SYSROOT, which the wrapper sets.
ldso=$(cd "$out/lib" && ls ld-musl-*.so.1)
# Debian's aarch64 gcc targets glibc: its default outline atomics make libgcc's helpers
# call glibc's __getauxval, which musl's libc.so does not export. Inline them instead.
cc1_arch=$([ "$arch" = aarch64 ] && echo " -mno-outline-atomics" || true)
at() { echo "%:getenv(NGMALLOC_SYSROOT $1)"; }
cat >"$out/lib/ngmalloc.specs" <<SPECS
%rename cpp_options old_cpp_options

*cpp_options:
-nostdinc -isystem $(at /include) -isystem include%s %(old_cpp_options)

*cc1:
%(cc1_cpu) -nostdinc -isystem $(at /include) -isystem include%s$cc1_arch

*link_libgcc:
-L$(at /lib) -L .%s

*libgcc:
libgcc.a%s %:if-exists(libgcc_eh.a%s)

*startfile:
%{!shared: %{static-pie:$(at /lib/rcrt1.o);:$(at /lib/Scrt1.o)}} $(at /lib/crti.o) crtbeginS.o%s

*endfile:
crtendS.o%s $(at /lib/crtn.o)

*link:
--build-id %{!static:%{!static-pie:-dynamic-linker $(at /lib/$ldso)}} -nostdlib %{shared:-shared} %{static:-static} %{static-pie:-static -pie --no-dynamic-linker -z text} %{rdynamic:-export-dynamic}

SPECS
mkdir -p "$out/bin"
cat >"$out/bin/ngmalloc-cc" <<SH
#!/bin/sh
# C compiler for this sysroot (musl $version, $arch, with $malloc): gcc with the
# sysroot's specs, the sysroot found from where this script is.
NGMALLOC_SYSROOT=\$(cd "\$(dirname "\$(readlink -f "\$0")")/.." && pwd) || exit 1
export NGMALLOC_SYSROOT
case " \$* " in
*" --version "*) echo "ngmalloc-cc: $ident, sysroot \$NGMALLOC_SYSROOT" ;;
esac
exec "\${REALGCC:-$cc}" "\$@" -specs "\$NGMALLOC_SYSROOT/lib/ngmalloc.specs"
SH
chmod +x "$out/bin/ngmalloc-cc"
# Rust: rustc links a musl target through a C compiler when told not to use its own
# self-contained copy of musl (-C link-self-contained=no); it then asks for -lunwind,
# which comes from the Rust target's copy of libunwind.
rustlib="$(rustc --print sysroot)/lib/rustlib/$target/lib"
if [ -f "$rustlib/self-contained/libunwind.a" ]; then
  cp "$rustlib/self-contained/libunwind.a" "$out/lib/"
fi
cat >"$out/bin/ngmalloc-rust-linker" <<'SH'
#!/bin/sh
# Linker for rustc's musl builds against this sysroot.
exec "$(dirname "$(readlink -f "$0")")/ngmalloc-cc" "$@"
SH
chmod +x "$out/bin/ngmalloc-rust-linker"
# cargo resolves a relative path in a --config file against the parent of the file's
# directory: cargo/config.toml's paths are the sysroot's. The C code of crates (cc-rs:
# CC_<target>, AR_<target>) is compiled with the wrapper too.
ar_tool=${cross}ar
mkdir -p "$out/cargo"
cat >"$out/cargo/config.toml" <<TOML
# cargo --config SYSROOT/cargo/config.toml build --target $target
[target.$target]
linker = "bin/ngmalloc-rust-linker"
rustflags = ["-C", "link-self-contained=no"]

[env]
CC_${target//-/_} = { value = "bin/ngmalloc-cc", relative = true }
AR_${target//-/_} = "$ar_tool"
TOML
echo "$stamp" >"$out/.stamp"

cat <<USE
build-sysroot: done. musl $version with $malloc in $out
  C, static:        $out/bin/ngmalloc-cc -static prog.c -o prog
  C, static-pie:    $out/bin/ngmalloc-cc -static-pie prog.c -o prog
  C, dynamic:       $out/bin/ngmalloc-cc prog.c -o prog   (runs through $out/lib/$ldso)
  Rust, static:     cargo --config $out/cargo/config.toml build --target $target
  Rust, static-pie: the same; rustc's default for this target (add
                    -C relocation-model=static for a classic static binary)
USE
