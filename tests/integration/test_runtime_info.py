"""The runtime-information RPCs a kubelet calls first: Version, Status,
RuntimeConfig, UpdateRuntimeConfig; and UNIMPLEMENTED for the rest.

Each test drives a real daemon through python3-grpcio.
"""

import json
import os
import time

import grpc
import pytest

import cri_harness

BRIDGE_CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "picocri-it",
    "plugins": [
        {"type": "bridge", "bridge": "pcit0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.7.0/24"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

# RPCs that this stage of picocri does not implement.  A later issue that
# implements one removes it from this list and adds real tests.
UNIMPLEMENTED = ["CheckpointContainer", "ListMetricDescriptors", "ListPodSandboxMetrics",
                 "UpdatePodSandboxResources", "StreamImages", "StreamContainers"]


def conditions(resp):
    return {c.type: c for c in resp.status.conditions}


def write_conflist(d, name="10-picocri-it.conflist", content=None):
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(content or BRIDGE_CONFLIST, f)
    os.rename(tmp, os.path.join(d, name))


def test_version_fields_exact(cri, pb):
    want_version = open(os.path.join(cri_harness.REPO, "VERSION")).read().strip()
    resp = cri.Version(pb.VersionRequest(version="0.1.0"))
    assert resp.version == "0.1.0"
    assert resp.runtime_name == "picocri"
    assert resp.runtime_version == want_version
    assert resp.runtime_api_version == "v1"
    # An empty request (crictl sends its own version string, kubelet 0.1.0).
    assert cri.Version() == resp


def test_status_network_follows_cni_dir(daemon, pb):
    cri = daemon.cri()
    assert os.listdir(daemon.cni_conf_dir) == []
    conds = conditions(cri.Status())
    assert len(conds) >= 2
    assert conds["RuntimeReady"].status is True
    net = conds["NetworkReady"]
    assert net.status is False
    assert net.reason, "NetworkReady=false needs a reason"
    assert net.message, "NetworkReady=false needs a message"

    write_conflist(daemon.cni_conf_dir)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        conds = conditions(cri.Status())
        if conds["NetworkReady"].status:
            break
        time.sleep(0.2)
    assert conds["NetworkReady"].status is True, \
        "NetworkReady still false 15 s after a bridge conflist appeared: %s" % conds["NetworkReady"]
    assert conds["RuntimeReady"].status is True

    # And back to not ready when the config goes away.
    os.unlink(os.path.join(daemon.cni_conf_dir, "10-picocri-it.conflist"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        conds = conditions(cri.Status())
        if not conds["NetworkReady"].status:
            break
        time.sleep(0.2)
    assert conds["NetworkReady"].status is False and conds["NetworkReady"].reason


def test_status_network_not_ready_for_invalid_conf(daemon, pb):
    """A file in the CNI dir that is not a loadable network config is not ready."""
    with open(os.path.join(daemon.cni_conf_dir, "10-broken.conflist"), "w") as f:
        f.write("{ this is not json")
    time.sleep(1.0)
    net = conditions(daemon.cri().Status())["NetworkReady"]
    assert net.status is False and net.reason


def test_status_verbose_info(cri, pb):
    plain = cri.Status(pb.StatusRequest(verbose=False))
    assert len(plain.info) == 0, "info is only for verbose=true"
    resp = cri.Status(pb.StatusRequest(verbose=True))
    assert len(resp.info) > 0
    for key, value in resp.info.items():
        # crictl info json-decodes every value and fails otherwise.
        try:
            json.loads(value)
        except ValueError:
            pytest.fail("info[%r] is not JSON: %.200r" % (key, value))
    assert conditions(resp)["RuntimeReady"].status is True


def test_runtime_config_cgroup_driver(daemon, pb):
    resp = daemon.cri().RuntimeConfig()
    assert resp.HasField("linux"), "RuntimeConfig must carry linux.cgroup_driver"
    assert resp.linux.cgroup_driver in (pb.SYSTEMD, pb.CGROUPFS)
    # The driver must not change while a kubelet runs, nor across restarts.
    assert daemon.cri().RuntimeConfig() == resp
    daemon.restart()
    assert daemon.cri().RuntimeConfig() == resp


@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_runtime_config_cgroup_driver_flag(daemon_factory, pb, driver):
    d = daemon_factory(extra_args=["--cgroup-driver", driver])
    want = {"cgroupfs": pb.CGROUPFS, "systemd": pb.SYSTEMD}[driver]
    resp = d.cri().RuntimeConfig()
    assert resp.HasField("linux") and resp.linux.cgroup_driver == want


def pod_cidr_visible(daemon, cidr):
    info = daemon.cri().Status(daemon.pb.StatusRequest(verbose=True)).info
    in_info = any(cidr in v for v in info.values())
    path = os.path.join(daemon.root, "meta", "pod-cidr")
    in_file = os.path.exists(path) and open(path).read().strip() == cidr
    return in_info or in_file, in_info, in_file


def test_update_runtime_config_pod_cidr_persists(daemon, pb):
    cidr = "10.244.3.0/24"
    req = pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
        network_config=pb.NetworkConfig(pod_cidr=cidr)))
    daemon.cri().UpdateRuntimeConfig(req)
    ok, _, _ = pod_cidr_visible(daemon, cidr)
    assert ok, "pod_cidr not in Status verbose info nor in <root>/meta/pod-cidr"
    daemon.restart()
    ok, in_info, in_file = pod_cidr_visible(daemon, cidr)
    assert ok, "pod_cidr lost across restart (info=%s file=%s)" % (in_info, in_file)

    # A second update replaces it; an empty request (kubelet before the node
    # has a CIDR) is accepted.
    cidr2 = "10.244.9.0/24"
    req.runtime_config.network_config.pod_cidr = cidr2
    daemon.cri().UpdateRuntimeConfig(req)
    daemon.cri().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest())
    daemon.restart()
    assert pod_cidr_visible(daemon, cidr2)[0]
    assert not pod_cidr_visible(daemon, cidr)[0]


@pytest.mark.parametrize("method", UNIMPLEMENTED)
def test_unimplemented_rpc(cri, method):
    with pytest.raises(grpc.RpcError) as ei:
        cri.call(method)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert method in (ei.value.details() or ""), ei.value.details()
    assert cri.Version().runtime_name == "picocri"


@pytest.mark.parametrize("path", [
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/runtime.v1.NoSuchService/Version",
    "/runtime.v1alpha2.RuntimeService/Version",
    "/runtime.v1.runtimeservice/version",
    "/",
])
def test_unknown_method_path(cri, path):
    with pytest.raises(grpc.RpcError) as ei:
        cri.raw(path, b"")
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert cri.Version().runtime_api_version == "v1"


def test_sigterm_with_open_connections_exits_zero(daemon, pb):
    """Graceful drain: idle and half-finished connections do not hold it up."""
    import h2raw
    cri = daemon.cri()
    cri.Version()  # the grpc channel stays connected and idle
    raw = h2raw.RawH2(daemon.sock)
    raw.start_call("/runtime.v1.RuntimeService/Version")  # never finished
    idle = h2raw.unix_connect(daemon.sock)
    try:
        t0 = time.monotonic()
        os.kill(daemon.proc.pid, 15)
        daemon.proc.wait(15)
        assert daemon.proc.returncode == 0, daemon.stderr_tail()
        assert time.monotonic() - t0 < 15
        # The client was told, not left hanging: GOAWAY or close.
        raw.pump(2.0)
        assert raw.terminated is not None or raw.closed
    finally:
        raw.close()
        idle.close()
    daemon.stopped = True
    # It starts again on the same paths (a stale socket file is replaced).
    daemon.start()
    assert daemon.cri().Version().runtime_name == "picocri"
