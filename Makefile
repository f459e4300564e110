# ngmalloc. `make` builds the standalone library (build/libngmalloc.so, build/libngmalloc.a)
# and a musl sysroot on ngmalloc (build/sysroot-musl-$(MUSL)); `make test` runs every
# test. Both check their tools first and install what is missing.

BUILD   ?= build
CARGO   ?= cargo
CC      ?= cc
CXX     ?= g++
# Optional mitigations, e.g. HARDEN="zero-on-free random-slots" or HARDEN=all
# (src/config.rs).
HARDEN_OPTIONS := zero-on-free random-slots quarantine big-guards freed-word string-end canary-room
HARDEN  ?=
HARDEN_FEATURES := $(addprefix harden-,$(HARDEN))
export CARGO_TARGET_DIR ?= target
# The musl version of the sysroots (toolchain/build-sysroot.sh: 1.2.6, 1.2.5 or 1.2.3).
export MUSL ?= 1.2.6
SYSROOT := $(BUILD)/sysroot-musl-$(MUSL)

# The standalone library's exports: exactly these are global in both libraries.
EXPORTS := malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign \
           valloc pvalloc malloc_usable_size free_sized free_aligned_sized malloc_object_size
# ...and C++'s operator new and delete, every form (standalone/new.cc)
CXX_EXPORTS := _Znwm _Znam _ZnwmRKSt9nothrow_t _ZnamRKSt9nothrow_t _ZnwmSt11align_val_t \
           _ZnamSt11align_val_t _ZnwmSt11align_val_tRKSt9nothrow_t \
           _ZnamSt11align_val_tRKSt9nothrow_t _ZdlPv _ZdaPv _ZdlPvRKSt9nothrow_t \
           _ZdaPvRKSt9nothrow_t _ZdlPvm _ZdaPvm _ZdlPvSt11align_val_t _ZdaPvSt11align_val_t \
           _ZdlPvSt11align_val_tRKSt9nothrow_t _ZdaPvSt11align_val_tRKSt9nothrow_t \
           _ZdlPvmSt11align_val_t _ZdaPvmSt11align_val_t

.PHONY: all deps deps-build deps-bench lib sysroot sysroot-stock sysroot-aarch64 test check \
        bench bench-quick bench-publish soak rootfs rootfs-test suites clean

all: lib sysroot

# the tools each target needs (ci/deps.sh): building, benchmarking, testing
deps-build:
	@ci/deps.sh build
deps-bench:
	@ci/deps.sh bench
deps:
	@ci/deps.sh test

lib: deps-build
	$(CARGO) build --release -p ngmalloc-standalone $(if $(HARDEN),--features "$(HARDEN_FEATURES)")
	@mkdir -p $(BUILD)
	@# one relocatable object with only the exports global: no Rust core/builtins symbol
	@# can clash with the program's, and no unwind tables (panic = abort).
	ld -r $(addprefix -u ,$(EXPORTS)) -o $(BUILD)/ngmalloc.tmp.o $(CARGO_TARGET_DIR)/release/libngmalloc_standalone.a
	objcopy $(addprefix --keep-global-symbol=,$(EXPORTS)) --strip-debug \
		-R .eh_frame -R .rela.eh_frame -R .llvmbc -R .llvmcmd -R .comment \
		$(BUILD)/ngmalloc.tmp.o $(BUILD)/ngmalloc.o
	@# C++'s operators over the exports; the C++ runtime only weakly referenced, so C
	@# programs load the library without it
	$(CXX) -std=c++17 -O2 -fPIC -Wall -Wextra -Werror -c standalone/new.cc -o $(BUILD)/new.o
	rm -f $(BUILD)/ngmalloc.tmp.o $(BUILD)/libngmalloc.a
	ar rcs $(BUILD)/libngmalloc.a $(BUILD)/ngmalloc.o $(BUILD)/new.o
	$(CC) -shared -o $(BUILD)/libngmalloc.so $(BUILD)/ngmalloc.o $(BUILD)/new.o \
		-Wl,-soname,libngmalloc.so -Wl,-z,relro,-z,now
	@size $(BUILD)/ngmalloc.o

# The sysroot (toolchain/build-sysroot.sh --help for options: musl version, tarball).
sysroot: deps-build
	toolchain/build-sysroot.sh --musl $(MUSL) $(if $(HARDEN),--harden "$(HARDEN)")

# stock musl (mallocng) built the same way, for comparisons; the aarch64 sysroots, cross-built
sysroot-stock: deps-build
	toolchain/build-sysroot.sh --musl $(MUSL) --malloc mallocng

sysroot-aarch64: deps
	toolchain/build-sysroot.sh --musl $(MUSL) --arch aarch64
	toolchain/build-sysroot.sh --musl $(MUSL) --arch aarch64 --malloc mallocng

test: deps lib sysroot
	@BUILD=$(BUILD) CC=$(CC) CXX=$(CXX) CARGO=$(CARGO) EXPORTS="$(EXPORTS)" CXX_EXPORTS="$(CXX_EXPORTS)" ci/test.sh

# The quick loop (a few minutes): formatting, lints, the host tests, the exports, C
# semantics and C++'s operators. ci/test.sh NAME... runs any steps by name.
CHECK_STEPS := "cargo fmt --check" "cargo clippy -D warnings" "host tests (cargo test)" \
               "exported symbols" "C semantics" "C++ operator"
check: lib
	@{ $(CARGO) fmt --version && $(CARGO) clippy --version; } >/dev/null 2>&1 || \
		{ echo "ngmalloc: make check needs rustfmt and clippy. Run: rustup component add rustfmt clippy" >&2; exit 1; }
	@BUILD=$(BUILD) CC=$(CC) CXX=$(CXX) CARGO=$(CARGO) EXPORTS="$(EXPORTS)" CXX_EXPORTS="$(CXX_EXPORTS)" ci/test.sh $(CHECK_STEPS)

# Installation (DESTDIR for staging). `make install`: the standalone library, with a
# pkg-config file (`pkg-config --libs ngmalloc`, or plain -lngmalloc). `make
# install-sysroot`: the sysroot, relocatable (its wrappers and cargo config find it from
# where they are), under $(SYSROOT_DIR), with ngmalloc-cc linked into $(PREFIX)/bin.
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib
SYSROOT_DIR ?= $(LIBDIR)/ngmalloc/sysroot-musl-$(MUSL)
VERSION      = $(shell sed -n 's/^version = "\(.*\)"/\1/p' standalone/Cargo.toml)
.PHONY: install install-sysroot
install: lib
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(BUILD)/libngmalloc.a $(DESTDIR)$(LIBDIR)/libngmalloc.a
	install -m 755 $(BUILD)/libngmalloc.so $(DESTDIR)$(LIBDIR)/libngmalloc.so
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))' '' 'Name: ngmalloc' \
		'Description: hardened, fast malloc (ngmalloc standalone library)' \
		'Version: $(VERSION)' 'Libs: -L$${libdir} -lngmalloc' 'Libs.private: -lpthread' \
		> $(DESTDIR)$(LIBDIR)/pkgconfig/ngmalloc.pc

install-sysroot: sysroot
	install -d $(DESTDIR)$(SYSROOT_DIR) $(DESTDIR)$(PREFIX)/bin
	cp -R $(SYSROOT)/. $(DESTDIR)$(SYSROOT_DIR)/
	ln -sf $(shell realpath -m --relative-to=$(PREFIX)/bin $(SYSROOT_DIR))/bin/ngmalloc-cc \
		$(DESTDIR)$(PREFIX)/bin/ngmalloc-cc

# `make print-VAR` prints a variable (ci/test.sh reads the export lists this way)
print-%:
	@echo $($*)

# The benchmark harness (bench/README.md): every workload on ngmalloc, stock musl, glibc,
# mimalloc and jemalloc in one run. bench-publish copies the last full report into
# bench/results/ and its summary into the README.
bench: deps-bench lib sysroot sysroot-stock
	python3 bench/harness.py --build $(BUILD) --out $(BUILD)/bench

bench-quick: deps-bench lib sysroot sysroot-stock
	python3 bench/harness.py --quick --build $(BUILD) --out $(BUILD)/bench-quick

bench-publish:
	python3 bench/report.py --publish $(BUILD)/bench

# The soak test (soak/README.md): SOAK_SECONDS of churn with a stable live set on the
# sysroot and on the standalone library; no block may be corrupted and RSS must stop
# growing. (Not SECONDS: bash keeps a variable of that name.)
SOAK_SECONDS ?= 600
soak: deps-bench lib sysroot
	ci/soak.sh $(BUILD) $(SYSROOT)$(if $(HARDEN),-hardened) $(SOAK_SECONDS)

# The test image (rootfs/README.md): BusyBox, the C tests and the attack suite, static on
# ngmalloc, as an initramfs; rootfs-test boots it under qemu on two of Debian's kernels:
# bookworm's 6.1 (guard markers refused: the fallback) and forky's 7.x (real markers).
rootfs: deps sysroot
	rootfs/build.sh $(BUILD) $(SYSROOT)
	rootfs/kernel.sh $(BUILD)/rootfs/vmlinuz
	rootfs/kernel.sh $(BUILD)/rootfs/vmlinuz-forky forky

rootfs-test: rootfs
	rootfs/boot-test.sh $(BUILD)/rootfs/vmlinuz $(BUILD)/rootfs/initramfs.cpio.gz
	rootfs/boot-test.sh $(BUILD)/rootfs/vmlinuz-forky $(BUILD)/rootfs/initramfs.cpio.gz \
		$(BUILD)/rootfs/console-forky.log

# Real software's own test suites (BusyBox, gawk) on ngmalloc and on stock musl.
suites: deps sysroot sysroot-stock
	real-software/suites.sh $(SYSROOT) $(SYSROOT)-mallocng $(BUILD)/real

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
