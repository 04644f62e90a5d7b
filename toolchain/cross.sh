# shellcheck shell=sh
# Cross-compilation facts per ARCH, sourced by install.sh and qemu-run.sh
# (POSIX sh).  The Debian multiarch way: the target's own -dev packages
# (libuv1-dev:arm64, ...) install beside the host's under
# /usr/lib/<triplet>/ and /usr/include/<triplet>/, the cross compiler from
# Debian (gcc-<triplet>) searches those directories, and qemu-user runs the
# target binaries against the target's libc6 from the same multiarch tree.
# A Multi-Arch: same library must have the same version for every
# architecture: apt upgrades the host copy with the foreign one when the
# archive moved on since the host copy was installed.

# cross_triplet ARCH: the GNU triplet (directory names, tool prefixes).
cross_triplet() {
    case "$1" in
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    *) echo "cross.sh: unknown ARCH $1 (arm64, armhf)" >&2; return 2 ;;
    esac
}

# cross_dpkg_arch ARCH: the Debian architecture name for dpkg --add-architecture.
cross_dpkg_arch() {
    case "$1" in
    arm64 | armhf) echo "$1" ;;
    *) echo "cross.sh: unknown ARCH $1 (arm64, armhf)" >&2; return 2 ;;
    esac
}

# cross_qemu ARCH: the qemu-user binary (from qemu-user-static) for ARCH.
cross_qemu() {
    case "$1" in
    arm64) echo qemu-aarch64-static ;;
    armhf) echo qemu-arm-static ;;
    *) echo "cross.sh: unknown ARCH $1 (arm64, armhf)" >&2; return 2 ;;
    esac
}

# cross_packages ARCH "LIBS": what a cross build and a qemu-user unit-test
# run need: the cross compiler, the target's libc (for the multiarch dynamic
# loader qemu-user runs) and every library's -dev package for the target.
cross_packages() {
    _arch=$(cross_dpkg_arch "$1") || return 2
    _triplet=$(cross_triplet "$1") || return 2
    _pkgs="gcc-$_triplet binutils-$_triplet libc6:$_arch libc6-dev:$_arch"
    for _p in $2; do
        _pkgs="$_pkgs $_p:$_arch"
    done
    echo "$_pkgs"
}
