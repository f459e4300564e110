# ngmalloc: included by config.mak (written by configure --with-malloc=ngmalloc).
# Adds the Rust core, built by cargo, to libc.a and libc.so through LIBC_OBJS, so that
# with a PIC-default compiler (AOBJS = $(LOBJS)) it still lands in libc.a exactly once.

# config.mak is read before musl's `all:`: keep `all` the default goal.
.DEFAULT_GOAL := all

NGMALLOC_CORE = obj/src/malloc/ngmalloc/ngmalloc_core.o
LIBC_OBJS += $(NGMALLOC_CORE)

NGMALLOC_DEPS = $(shell find $(NGMALLOC_SRC)/src $(NGMALLOC_SRC)/musl-object -name '*.rs') \
	$(NGMALLOC_SRC)/Cargo.toml $(NGMALLOC_SRC)/musl-object/Cargo.toml \
	$(NGMALLOC_SRC)/toolchain/rust-object.sh

$(NGMALLOC_CORE): $(NGMALLOC_DEPS)
	@mkdir -p $(@D)
	CROSS_COMPILE="$(CROSS_COMPILE)" NGMALLOC_FEATURES="$(NGMALLOC_FEATURES)" \
		$(NGMALLOC_SRC)/toolchain/rust-object.sh $(NGMALLOC_TARGET) $@

# The core is position-independent: the shared library takes the same object.
$(NGMALLOC_CORE:.o=.lo): $(NGMALLOC_CORE)
	cp $< $@
