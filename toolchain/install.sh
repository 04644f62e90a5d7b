#!/bin/sh
# Installs, idempotently, every Debian package the build and the tests need
# for ARCH (host, arm64, armhf).  Packages already installed are skipped; when
# something is missing: `apt-get update` once (its errors are tolerated: one
# index can be briefly stale during a mirror sync), then `apt-get install`,
# which must succeed.
set -eu
arch=${1:-host}
here=$(dirname "$0")

# Build and unit-test libraries (for the target architecture).
LIBS="libuv1-dev libnghttp2-dev libnanopb-dev libmbedtls-dev libcjson-dev zlib1g-dev
      libzstd-dev libseccomp-dev libyaml-dev libfuse3-dev libcmocka-dev"
# Tools that run on the build machine.
TOOLS="make gcc clang pkg-config nanopb protobuf-compiler python3-protobuf"
# Integration tests and benchmarks (host only).
TEST_TOOLS="python3-grpcio python3-pytest docker-registry umoci skopeo busybox-static
      containernetworking-plugins iproute2 crun runc containerd openssl apache2-utils
      python3-websocket procps util-linux python3-pytest-timeout python3-h2
      golang-go golang-github-docker-spdystream-dev"

case "$arch" in
host) want="$LIBS $TOOLS $TEST_TOOLS"; dpkg_arch="" ;;
arm64 | armhf)
    . "$here/cross.sh"
    want="$TOOLS qemu-user-static $(cross_packages "$arch" "$LIBS")"
    dpkg_arch=$(cross_dpkg_arch "$arch")
    ;;
*) echo "install.sh: unknown ARCH $arch (host, arm64, armhf)" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: missing packages:$missing; run as root (or install them)" >&2
    exit 1
fi
added_arch=""
if [ -n "$dpkg_arch" ] && ! dpkg --print-foreign-architectures | grep -qx "$dpkg_arch"; then
    dpkg --add-architecture "$dpkg_arch"
    added_arch=$dpkg_arch
fi
# Another apt run (an unattended upgrade, a parallel `make deps`) holds the
# dpkg lock for a while: wait for it instead of failing.
lock="-o DPkg::Lock::Timeout=900"
echo "install.sh: installing$missing"
# A foreign architecture's Multi-Arch: same libraries must match the host's
# versions exactly; apt resolves that by upgrading the host copies, which
# needs every index current: one retry covers a mirror caught mid-sync.
apt-get $lock update -q || { sleep 20; apt-get $lock update -q; } ||
    echo "install.sh: apt-get update reported errors; continuing" >&2
# Upgrades of host packages (see above) keep local configuration files.
keep="-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
if ! DEBIAN_FRONTEND=noninteractive apt-get $lock $keep install -y -q --no-install-recommends \
    $missing </dev/null; then
    if [ -n "$dpkg_arch" ]; then
        echo "install.sh: each $dpkg_arch library must have exactly the version of the" \
            "host's copy (Multi-Arch: same); a host package from bookworm-security needs" \
            "the $dpkg_arch index of bookworm-security too: check apt-get update's errors" >&2
    fi
    # Leave the machine as found: an architecture added by this run and still
    # without packages would make every later apt-get update fetch its indexes.
    if [ -n "$added_arch" ]; then
        dpkg --remove-architecture "$added_arch" 2>/dev/null &&
            apt-get $lock update -q >/dev/null 2>&1 || true
    fi
    exit 1
fi
