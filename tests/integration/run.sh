#!/bin/sh
# Runs the integration tests (pytest, as root) against $PICOCRI_BIN.
# Without root: says so and exits 0 (a skip, not a pass).  pytest's exit code
# 5 (no test collected) is a failure.  Each test has a time limit
# (pytest-timeout) and the whole run another, so it always ends.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "integration tests need root; skipped"
    exit 0
fi
: "${PICOCRI_BIN:=$here/../../build/host-san/picocri}"
export PICOCRI_BIN
# Debian's interpreter: python3-grpcio, -protobuf, -pytest come from apt.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
TEST_TIMEOUT=${TEST_TIMEOUT:-180}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
if ! "$py" -c 'import grpc, google.protobuf, h2, pytest_timeout' 2>/dev/null; then
    echo "integration: python3-grpcio, python3-protobuf, python3-h2 or" \
        "python3-pytest-timeout missing (toolchain/install.sh installs them)" >&2
    exit 1
fi
cd "$here" || exit 1
timeout -k 30 "$RUN_TIMEOUT" "$py" -m pytest -q -p no:cacheprovider \
    --timeout="$TEST_TIMEOUT" -o junit_family=xunit2 \
    "$@"
rc=$?
case $rc in
0) ;;
5) echo "integration: no tests were collected (counts as failure)" ;;
124 | 137) echo "integration: run exceeded ${RUN_TIMEOUT}s and was stopped" ;;
*) echo "integration: pytest exited $rc" ;;
esac
[ "$rc" -eq 0 ]
