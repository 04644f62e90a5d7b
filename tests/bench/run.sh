#!/bin/sh
# Benchmarks $PICOCRI_BIN (a release build) against Debian's containerd
# (CRI plugin) and prints a table of figures and ratios.  Needs root.
# Extra arguments go to harness.py (e.g. --calls 2000 --workloads idle).
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "benchmarks need root (they start containerd); skipped"
    exit 0
fi
: "${PICOCRI_BIN:=$here/../../build/host/picocri}"
if [ ! -x "$PICOCRI_BIN" ]; then
    echo "bench: $PICOCRI_BIN is missing; run \`make bench\`" >&2
    exit 1
fi
if ! command -v containerd >/dev/null 2>&1; then
    echo "bench: containerd is not installed (toolchain/install.sh installs it)" >&2
    exit 1
fi
py=/usr/bin/python3
[ -x "$py" ] || py=python3
exec timeout -k 30 "${BENCH_TIMEOUT:-3600}" "$py" "$here/harness.py" --picocri "$PICOCRI_BIN" "$@"
