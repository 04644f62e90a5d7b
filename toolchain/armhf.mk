# Cross build for 32-bit ARM with hardware float (ARMv7, Debian armhf).
TRIPLET := arm-linux-gnueabihf
QEMU_ARCH := armhf
include toolchain/cross.mk
