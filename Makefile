# picocri: one non-recursive Makefile.
#
#   make                      host build of build/host/picocri
#   make ARCH=arm64|armhf     cross build (toolchain/<arch>.mk)
#   make test                 installs what is missing, then unit tests (ASan+UBSan),
#                             fuzz smoke runs and integration tests (root)
#   make test-unit            unit tests only (ARCH=arm64 runs them under qemu-user)
#   make test-fuzz            fuzz smoke runs only (FUZZ_SECONDS=10 each)
#   make test-integration     integration tests only (root)
#   make fuzz                 longer fuzzing runs (300 s per target)
#   make run                  build, install what is missing, start the daemon
#   make bench                benchmarks against containerd, crun and runc (root)
#
# Switches: SANITIZE=address,undefined  DEBUG=1  V=1  LINK=static|shared
# Output: build/<arch>/ (build/<arch>-san/ with SANITIZE), build/fuzz/.

ARCH ?= host
include toolchain/$(ARCH).mk

SAN_SUFFIX := $(if $(SANITIZE),-san)
BUILD := build/$(ARCH)$(SAN_SUFFIX)
Q := $(if $(V),,@)

PKGS := libuv libnghttp2 libcjson zlib libzstd libseccomp yaml-0.1 fuse3
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# Debian's mbedTLS 2.28 and nanopb ship no pkg-config files.
NANOPB_LIB := /usr/lib/$(TRIPLET)/libprotobuf-nanopb.a
SYS_LIBS := -lpthread -lm -ldl -lrt
# LINK=static (default): every library Debian ships as an archive is linked
# into picocri (still a PIE); only glibc and cJSON (Debian 12 has no
# libcjson.a) stay shared.  A shared library costs every process, so every
# container's monitor, its own relocated data and .bss (8-24 KiB each), and
# the firmware needs no runtime copies of them.  glibc stays shared: its code
# pages are shared with every process of the device and its NSS (user and
# host look-ups) needs the dynamic loader.  LINK=shared links everything
# shared; sanitizer builds always do (ASan wants a dynamic libc).
LINK ?= $(if $(SANITIZE),shared,static)
ifeq ($(LINK),static)
STATIC_PKGS := libuv-static libnghttp2 zlib libzstd libseccomp yaml-0.1 fuse3
STATIC_LIBS := $(filter-out $(SYS_LIBS) -pthread,\
                 $(shell $(PKG_CONFIG) --static --libs $(STATIC_PKGS) 2>/dev/null))
LIBS := -Wl,-Bstatic $(STATIC_LIBS) -lmbedtls -lmbedx509 -lmbedcrypto -Wl,-Bdynamic \
        $(shell $(PKG_CONFIG) --libs libcjson 2>/dev/null) $(NANOPB_LIB) $(SYS_LIBS)
else
LIBS := $(PKG_LIBS) -lmbedtls -lmbedx509 -lmbedcrypto $(NANOPB_LIB) -lpthread -lm
endif

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)

WARN := -Wall -Wextra -Wmissing-prototypes -Wstrict-prototypes -Wvla -Wwrite-strings \
        -Wformat-security -fno-common -Wno-unused-parameter -Werror
# -Wstack-usage (agent objects, not tests): every frame of the agent is
# bounded (no alloca, no VLA) and small: it runs on small boards, in the
# thread pool and in forked children.  Big buffers belong on the heap.
# Checked in the optimised builds that ship, not under sanitizers or DEBUG=1
# (redzones and -O0 make frames much larger).
STACK_LIMIT ?= 32768
STACK_WARN := $(if $(SANITIZE)$(DEBUG),,-Wstack-usage=$(STACK_LIMIT))
OPT := $(if $(DEBUG),-O0 -g3,-O2 -g)
# _FORTIFY_SOURCE needs optimisation (glibc warns, -Werror fails, at -O0).
FORTIFY := $(if $(DEBUG),,-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2)
HARDEN := -fstack-protector-strong -fPIE $(FORTIFY)
# `linux` is a predefined macro in GNU C and a CRI field name: undefine it.
# The nanopb library from Debian is built with PB_ENABLE_MALLOC.
# 64-bit off_t and ino_t on 32-bit targets (armhf): layers and blobs exceed
# 2 GB, libfuse3 requires it, and readdir() of a 64-bit filesystem fails with
# EOVERFLOW without it.  (time_t stays Debian 12's: its armhf libraries,
# mbedTLS included, have a 32-bit time_t in their structures.)
DEFS := -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Ulinux -DPB_ENABLE_MALLOC=1 \
        -DPICOCRI_VERSION='"$(VERSION)"'
INCS := -Iagent/core -I$(BUILD)/gen -Icri -Iagent
CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) $(DEFS) $(INCS) $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL := -pie -Wl,-z,relro,-z,now $(LDFLAGS)

ifneq ($(SANITIZE),)
HARDEN := -fPIE
CFLAGS_ALL += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_ALL += -fsanitize=$(SANITIZE)
endif
CFLAGS_ALL += $(HARDEN)

# Every .c under agent/ and cri/ is part of the agent; cri/cri_main.c holds main().
SRCS := $(sort $(wildcard agent/*/*.c) $(wildcard cri/*.c))
MAIN_SRC := cri/cri_main.c
LIB_SRCS := $(filter-out $(MAIN_SRC),$(SRCS))
# Each agent folder may describe its records in <folder>/<name>.proto (with an
# optional <name>.options beside it); nanopb code is generated into gen/.
AGENT_PROTOS := $(sort $(wildcard agent/*/*.proto))
GEN_NAMES := api $(basename $(notdir $(AGENT_PROTOS)))
GEN_HDRS := $(patsubst %,$(BUILD)/gen/%.pb.h,$(GEN_NAMES))
OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(patsubst %,$(BUILD)/obj/gen/%.pb.o,$(GEN_NAMES))
MAIN_OBJ := $(BUILD)/obj/$(MAIN_SRC:.c=.o)

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

all: $(BUILD)/picocri

# Everything is rebuilt when the compiler or its flags change (SANITIZE=,
# DEBUG=, CFLAGS=, a library's pkg-config flags): the command line is kept in
# $(BUILD)/flags and rewritten only when it differs.
FLAGS := $(BUILD)/flags
FLAGS_NOW := $(CC) $(CFLAGS_ALL) $(STACK_WARN) $(LDFLAGS_ALL) $(LIBS)
ifneq ($(file <$(FLAGS)),$(FLAGS_NOW))
$(shell mkdir -p $(BUILD))
$(file >$(FLAGS),$(FLAGS_NOW))
endif

# A grouped target (&:): one generator run makes both files, also under -j.
$(BUILD)/gen/api.pb.c $(BUILD)/gen/api.pb.h &: cri/api.proto cri/api.options
	@mkdir -p $(BUILD)/gen
	$(Q)cd cri && nanopb_generator.py -q -f api.options -D $(CURDIR)/$(BUILD)/gen api.proto

define agent_proto_rule
$(BUILD)/gen/$(basename $(notdir $(1))).pb.c $(BUILD)/gen/$(basename $(notdir $(1))).pb.h &: $(1) $(wildcard $(basename $(1)).options) cri/api.proto
	@mkdir -p $(BUILD)/gen
	$(Q)cd $(dir $(1)) && nanopb_generator.py -q -I . -I $(CURDIR)/cri -D $(CURDIR)/$(BUILD)/gen $(notdir $(1))
endef
$(foreach p,$(AGENT_PROTOS),$(eval $(call agent_proto_rule,$(p))))

$(BUILD)/obj/gen/%.pb.o: $(BUILD)/gen/%.pb.c $(GEN_HDRS) $(FLAGS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS_ALL) $(STACK_WARN) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN_HDRS) $(FLAGS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS_ALL) $(STACK_WARN) -MMD -MP -c -o $@ $<

$(BUILD)/libpicocri.a: $(OBJS)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/picocri: $(MAIN_OBJ) $(BUILD)/libpicocri.a $(FLAGS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $(MAIN_OBJ) $(BUILD)/libpicocri.a $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libpicocri.a $(FLAGS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -Itests/unit -o $@ $< $(BUILD)/libpicocri.a \
	    $(LDFLAGS_ALL) $(LIBS) -lcmocka

# Header dependencies recorded by -MMD (objects and unit-test binaries).
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tests ------------------------------------------------------------------
deps:
	$(Q)toolchain/install.sh $(ARCH)

test: deps
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined test-unit
	$(Q)$(MAKE) --no-print-directory test-fuzz
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined test-integration

test-unit: $(UNIT_BINS) $(BUILD)/picocri
	$(Q)tests/run-unit.sh "$(RUNNER)" $(UNIT_BINS)

FUZZ_SECONDS ?= 10
test-fuzz:
	$(Q)$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk FUZZ_SECONDS=$(FUZZ_SECONDS) run

fuzz:
	$(Q)$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk FUZZ_SECONDS=300 run

test-integration: $(BUILD)/picocri
	$(Q)PICOCRI_BIN=$(CURDIR)/$(BUILD)/picocri tests/integration/run.sh

# bench and run install first, then build in a second make: the library
# flags (pkg-config) are read when make starts, so a build that follows an
# install must be a new make (and is never run in parallel with apt).
bench: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/picocri
	$(Q)PICOCRI_BIN=$(CURDIR)/$(BUILD)/picocri tests/bench/run.sh

# RUN_ARGS: extra `picocri serve` flags, e.g. make run RUN_ARGS='--log-level debug'.
run: deps
	$(Q)$(MAKE) --no-print-directory $(BUILD)/picocri
	$(Q)exec toolchain/run-local.sh $(CURDIR)/$(BUILD)/picocri $(RUN_ARGS)

format:
	$(Q)clang-format -i $(SRCS) $(wildcard agent/*/*.h cri/*.h tests/unit/*.c tests/fuzz/*.c)

lint:
	$(Q)clang-format --dry-run -Werror $(SRCS) $(wildcard agent/*/*.h cri/*.h)

clean:
	rm -rf build

.PHONY: all deps test test-unit test-fuzz fuzz test-integration bench run format lint clean
.DELETE_ON_ERROR:
