#!/bin/sh
# Runs a target binary of ARCH (arm64, armhf) on the build machine under
# qemu-user: qemu-run.sh ARCH BINARY [ARGS...].  The exit status is the
# binary's.
#
# The binary is dynamically linked against the target's multiarch libraries.
# With the target's libc6 installed (toolchain/install.sh ARCH), its dynamic
# loader sits at its usual path (/lib/ld-linux-aarch64.so.1) and finds the
# libraries in /usr/lib/<triplet>/, so the host's root is the right prefix.
# Without it, the cross toolchain's libc tree /usr/<triplet> is used.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 ARCH BINARY [ARGS...]" >&2
    exit 2
fi
here=$(dirname "$0")
. "$here/cross.sh"
arch=$1; shift
triplet=$(cross_triplet "$arch")
qemu=$(cross_qemu "$arch")
command -v "$qemu" >/dev/null 2>&1 || {
    echo "qemu-run.sh: $qemu not found; run toolchain/install.sh $arch" >&2
    exit 127
}
case "$arch" in
arm64) loader=/lib/ld-linux-aarch64.so.1 ;;
armhf) loader=/lib/ld-linux-armhf.so.3 ;;
esac
if [ -e "$loader" ] && [ -d "/usr/lib/$triplet" ]; then
    prefix=/
else
    prefix=/usr/$triplet
fi
QEMU_LD_PREFIX=$prefix exec "$qemu" "$@"
