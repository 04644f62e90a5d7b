#!/bin/sh
# `make run`: starts the daemon in the foreground with all of its state in
# ./local/ of this checkout (gitignored), so trying picocri never touches
# /var/lib/picocri, /run/picocri or /etc/cni of the machine.
#
#   toolchain/run-local.sh [PICOCRI_BINARY [EXTRA SERVE FLAGS...]]
#
# The Makefile installs what is missing and builds first; run by hand, this
# script builds the host binary itself when it is absent.  The configuration
# file local/picocri.yaml is written once and then left alone: edit it, or
# delete it to get the defaults back.  Paths in it are absolute because the
# daemon resolves relative ones against its own working directory.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

bin=${1:-$top/build/host/picocri}
[ $# -gt 0 ] && shift
if [ ! -x "$bin" ]; then
    echo "run-local.sh: $bin missing; building it" >&2
    make --no-print-directory deps
    make --no-print-directory build/host/picocri
fi

local_dir=$top/local
socket=$local_dir/run/picocri.sock
config=$local_dir/picocri.yaml
mkdir -p "$local_dir/run" "$local_dir/lib" "$local_dir/cni/net.d"
# Runtime state and the socket are for this user only, as /run/picocri is.
chmod 0700 "$local_dir/run" "$local_dir/lib"

if [ ! -f "$config" ]; then
    cat >"$config" <<EOF
# picocri configuration for \`make run\` (written once by toolchain/run-local.sh;
# edit it, or delete it to get these defaults back).  Every key is also a
# flag of \`picocri serve\` (--socket, --root, ...); flags win over this file.
socket: $socket
root: $local_dir/lib
state: $local_dir/run
cni-conf-dir: $local_dir/cni/net.d
log-level: info
# cni-bin-dir: /opt/cni/bin:/usr/lib/cni
# registries: /etc/rancher/k3s/registries.yaml
# cgroup-driver: cgroupfs
EOF
    echo "run-local.sh: wrote $config"
fi

# A pod network for crictl experiments: a bridge with host-local addresses
# (Debian's containernetworking-plugins live in /usr/lib/cni, which is in
# the default cni-bin-dir).  The subnet is one no other local runtime uses
# by default (containerd and podman use 10.88/16, CRI-O 10.85/16).
cni=$local_dir/cni/net.d/10-picocri.conflist
if [ -z "$(ls -A "$local_dir/cni/net.d")" ]; then
    cat >"$cni" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "picocri-local",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "picocri0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.86.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "loopback" }
  ]
}
EOF
    echo "run-local.sh: wrote $cni"
fi

# sun_path holds 108 bytes including the NUL.
if [ "${#socket}" -ge 108 ]; then
    echo "run-local.sh: warning: the socket path is ${#socket} bytes, longer than a" \
        "unix socket address allows; set socket: in $config to a shorter path" >&2
fi
if [ "$(id -u)" != 0 ]; then
    echo "run-local.sh: warning: not root; pods and containers need root" \
        "(namespaces, mounts, cgroups)" >&2
fi

rel_bin=$bin
case "$bin" in "$top"/*) rel_bin=${bin#"$top"/} ;; esac
cat <<EOF

picocri: state in local/, configuration in local/picocri.yaml
  socket:   $socket
  client:   $rel_bin info --socket $socket
            (or: export PICOCRI_SOCKET=$socket; $rel_bin info)
  crictl:   crictl -r unix://$socket info
            (or: export CONTAINER_RUNTIME_ENDPOINT=unix://$socket)
  kubelet:  --container-runtime-endpoint=unix://$socket
  stop:     Ctrl-C

EOF
exec "$bin" serve --config "$config" "$@"
