# Shared part of the cross builds (included by toolchain/arm64.mk and
# toolchain/armhf.mk after they set TRIPLET and QEMU_ARCH).
#
# Debian multiarch: the target's libraries and headers live under
# /usr/lib/$(TRIPLET)/ and /usr/include/$(TRIPLET)/ (installed by
# `toolchain/install.sh $(ARCH)`), which Debian's cross gcc searches by
# itself.  pkg-config reads only the target's .pc files.  Build tools that
# run on the build machine (nanopb_generator.py, protoc) stay the host's.
# Unit tests run under qemu-user through toolchain/qemu-run.sh.

# `:=` overrides a CC from the environment (often the host's gcc) but not
# one given on the command line.
CC := $(TRIPLET)-gcc
AR := $(TRIPLET)-ar
PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET)/pkgconfig:/usr/share/pkgconfig \
              PKG_CONFIG_PATH= pkg-config
RUNNER := toolchain/qemu-run.sh $(QEMU_ARCH)

# Without the target's libraries the cross compiler would quietly find the
# host's generic headers and fail late; say what to do instead.
ifeq ($(filter deps clean,$(MAKECMDGOALS)),)
ifeq ($(shell $(PKG_CONFIG) --exists libuv && command -v $(firstword $(CC)) >/dev/null && echo ok),)
$(error $(ARCH): cross compiler or target libraries missing; run `make ARCH=$(ARCH) deps` (root))
endif
endif
