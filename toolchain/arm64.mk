# Cross build for 64-bit ARM (Raspberry Pi 3/4/5 and similar, Debian arm64).
TRIPLET := aarch64-linux-gnu
QEMU_ARCH := arm64
include toolchain/cross.mk
