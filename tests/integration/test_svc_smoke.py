"""Smoke tests of the runtime service (pods and containers) with a real daemon.

What: a busybox image is built with umoci and imported offline
(`picocri import`), the daemon runs inside a network namespace this test
creates (so the CNI bridge stays off the host; entered with nsenter --net
only, so the cgroup mounts stay visible), and a kubelet-like sequence
runs through python3-grpcio: run pod (bridge + host-local + portmap), create
and start two containers, ExecSync (exit code, timeout), logs, stats, stop
with grace, a non-zero exit, an OOM kill, host network, shared PID namespace,
read-only root, run_as_user, restart recovery, stop/remove idempotency.

Cleanup: every pod and container is removed through CRI; the daemon is
stopped by PID; leftover monitor processes are killed by the PIDs the daemon
reported; the network namespace is deleted.  Missing privilege or tools ->
skip.
"""

import os
import shutil
import subprocess
import time
import uuid

import grpc
import pytest

import cri_harness
import lib_images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CNI_BIN = "/usr/lib/cni"
IMAGE = "docker.io/library/busybox:smoke"


def have_tools():
    return (shutil.which("umoci") and shutil.which("ip") and os.path.exists(lib_images.BUSYBOX)
            and os.path.exists(os.path.join(CNI_BIN, "bridge")))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if not have_tools():
        pytest.skip("umoci, ip, busybox or CNI plugins missing")
    path = str(tmp_path_factory.mktemp("layout") / "oci")
    lay = lib_images.Layout(path)
    lib_images.build_busybox(lay, "bb", cmd=("/bin/sleep", "3600"))
    return path


@pytest.fixture
def netns():
    name = "pcsvc-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                   check=True, timeout=30)
    yield name
    subprocess.run(["ip", "netns", "del", name], timeout=30)


def conflist(subnet):
    return """{"cniVersion": "1.0.0", "name": "pcsmoke", "plugins": [
  {"type": "bridge", "bridge": "pcbr0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "%s"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}""" % subnet


class Svc:
    """One daemon in the test's network namespace, plus the CRI helpers."""

    def __init__(self, factory, picocri_bin, layout, netns):
        ns = netns

        class NsDaemon(cri_harness.Daemon):
            def argv(self):
                # nsenter, not `ip netns exec`: that one remounts /sys in a
                # new mount namespace, which hides the cgroup mounts.
                return ["nsenter", "--net=/run/netns/" + ns] + super().argv() + [
                    "--cni-bin-dir", CNI_BIN]

        self.d = factory(start=False, daemon_class=NsDaemon)
        with open(os.path.join(self.d.cni_conf_dir, "10-smoke.conflist"), "w") as f:
            f.write(conflist("10.77.0.0/24"))
        subprocess.run([picocri_bin, "import", "--root", self.d.root, layout + ":bb", IMAGE],
                       check=True, timeout=120, capture_output=True)
        self.d.start()
        self.pb = self.d.pb
        self.cri = self.d.cri(timeout=60)
        self.logdir = os.path.join(self.d.workdir, "logs")
        self.monitors = set()

    def pod(self, name="p", host_net=False, shared_pid=False, ports=()):
        pb = self.pb
        uid = uuid.uuid4().hex
        nso = pb.NamespaceOption(
            network=pb.NODE if host_net else pb.POD,
            pid=pb.POD if shared_pid else pb.CONTAINER)
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace="smoke", uid=uid, attempt=0),
            hostname=name, log_directory=os.path.join(self.logdir, uid),
            labels={"app": name, "io.kubernetes.pod.name": name},
            annotations={"kubernetes.io/config.seen": "2024-01-01T00:00:00.123Z"},
            port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=c, host_port=h)
                           for c, h in ports],
            linux=pb.LinuxPodSandboxConfig(
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=nso)))
        r = self.cri.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg))
        return r.pod_sandbox_id, cfg

    def ctr(self, pod, cfg, name, cmd, start=True, **sc):
        pb = self.pb
        cc = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=IMAGE), command=cmd, log_path=name + "/0.log",
            labels={"io.kubernetes.container.name": name},
            annotations={"io.kubernetes.container.hash": "abc123"},
            linux=pb.LinuxContainerConfig(
                resources=pb.LinuxContainerResources(
                    memory_limit_in_bytes=sc.pop("memory", 0)),
                security_context=pb.LinuxContainerSecurityContext(**sc)))
        os.makedirs(os.path.join(cfg.log_directory, name), exist_ok=True)
        cid = self.cri.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=cc, sandbox_config=cfg)).container_id
        if start:
            self.cri.StartContainer(pb.StartContainerRequest(container_id=cid))
            self.note_monitor(cid)
        return cid

    def note_monitor(self, cid):
        import json
        st = self.status(cid, verbose=True)
        info = json.loads(st.info["info"])
        # Container init and monitor: killed by PID at cleanup if the
        # daemon could not remove them.
        for key in ("monitorPid", "pid"):
            if info.get(key):
                self.monitors.add(info[key])

    def status(self, cid, verbose=False):
        return self.cri.ContainerStatus(self.pb.ContainerStatusRequest(
            container_id=cid, verbose=verbose))

    def wait_state(self, cid, state, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status(cid).status
            if st.state == state:
                return st
            time.sleep(0.1)
        raise AssertionError("container %s not in state %d: %s" % (cid, state, st))

    def exec(self, cid, cmd, timeout=0):
        return self.cri.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=cmd,
                                                         timeout=timeout))

    def cleanup(self):
        try:
            if not self.d.running():
                return
            for p in self.cri.ListPodSandbox(self.pb.ListPodSandboxRequest()).items:
                self.cri.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
                self.cri.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))
        finally:
            for pid in self.monitors:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


@pytest.fixture
def svc(daemon_factory, picocri_bin, layout, netns):
    s = Svc(daemon_factory, picocri_bin, layout, netns)
    yield s
    s.cleanup()


def test_pod_network_two_containers_exec_logs_stats_stop(svc):
    pb = svc.pb
    pod, cfg = svc.pod("web")
    st = svc.cri.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod,
                                                             verbose=True)).status
    assert st.state == pb.SANDBOX_READY
    assert st.network.ip.startswith("10.77.0.")
    assert dict(st.labels) == dict(cfg.labels)
    assert dict(st.annotations) == dict(cfg.annotations)
    assert st.metadata == cfg.metadata and st.created_at > 0

    c1 = svc.ctr(pod, cfg, "c1", ["sh", "-c", "echo hello; echo oops >&2; exec sleep 3600"])
    c2 = svc.ctr(pod, cfg, "c2", ["sleep", "3600"])
    for c in (c1, c2):
        s = svc.wait_state(c, pb.CONTAINER_RUNNING)
        assert s.started_at > 0 and s.image_ref and s.image.image == IMAGE

    r = svc.exec(c1, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = svc.exec(c2, ["hostname"])
    assert r.stdout == b"web\n"
    r = svc.exec(c1, ["sh", "-c", "ip addr 2>/dev/null || cat /proc/net/dev"])
    assert r.exit_code == 0
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        svc.exec(c1, ["sleep", "30"], timeout=1)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 10

    url = svc.cri.Exec(pb.ExecRequest(container_id=c1, cmd=["sh"], stdout=True)).url
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    url = svc.cri.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod)).url
    assert "/portforward/" in url

    log = svc.status(c1).status.log_path
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline and "oops" not in text:
        text = open(log).read() if os.path.exists(log) else ""
        time.sleep(0.1)
    assert " stdout F hello\n" in text and " stderr F oops\n" in text

    stats = svc.cri.ListContainerStats(pb.ListContainerStatsRequest()).stats
    assert {s.attributes.id for s in stats} == {c1, c2}
    for s in stats:
        assert s.cpu.timestamp > 0 and s.memory.working_set_bytes.value > 0
    ps = svc.cri.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod)).stats
    assert len(ps.linux.containers) == 2

    t0 = time.monotonic()
    svc.cri.StopContainer(pb.StopContainerRequest(container_id=c2, timeout=2))
    took = time.monotonic() - t0
    s = svc.status(c2).status
    assert s.state == pb.CONTAINER_EXITED and s.exit_code == 137 and took >= 1.5
    svc.cri.StopContainer(pb.StopContainerRequest(container_id=c2, timeout=2))  # idempotent

    listed = svc.cri.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))).containers
    assert [c.id for c in listed] == [c1]
    assert dict(listed[0].annotations) == {"io.kubernetes.container.hash": "abc123"}

    svc.cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    assert svc.status(c1).status.state == pb.CONTAINER_EXITED
    svc.cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    svc.cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    svc.cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert not svc.cri.ListContainers(pb.ListContainersRequest()).containers
    with pytest.raises(grpc.RpcError) as e:
        svc.status(c1)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_exit_codes_oom_and_security(svc):
    pb = svc.pb
    pod, cfg = svc.pod("misc", host_net=True)
    bad = svc.ctr(pod, cfg, "bad", ["sh", "-c", "echo bye > /dev/termination-log; exit 7"])
    s = svc.wait_state(bad, pb.CONTAINER_EXITED)
    assert (s.exit_code, s.reason) == (7, "Error") and s.finished_at >= s.started_at > 0

    oom = svc.ctr(pod, cfg, "oom", ["sh", "-c", "x=a; while true; do x=$x$x; done"],
                  memory=16 << 20)
    s = svc.wait_state(oom, pb.CONTAINER_EXITED, timeout=60)
    assert s.reason == "OOMKilled", s

    user = svc.ctr(pod, cfg, "user", ["sleep", "3600"], run_as_user=pb.Int64Value(value=1000))
    svc.wait_state(user, pb.CONTAINER_RUNNING)
    r = svc.exec(user, ["id", "-u"])
    assert r.stdout == b"1000\n"

    with pytest.raises(grpc.RpcError) as e:
        svc.ctr(pod, cfg, "user", ["true"], start=False)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        svc.cri.StopContainer(pb.StopContainerRequest(container_id="f" * 64))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    svc.cri.RemoveContainer(pb.RemoveContainerRequest(container_id=user))
    svc.cri.RemoveContainer(pb.RemoveContainerRequest(container_id=user))
    with pytest.raises(grpc.RpcError) as e:
        svc.status(user)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_read_only_root(svc):
    pb = svc.pb
    pod, cfg = svc.pod("ro", host_net=True)
    ro = svc.ctr(pod, cfg, "ro", ["sleep", "3600"], readonly_rootfs=True)
    svc.wait_state(ro, pb.CONTAINER_RUNNING)
    r = svc.exec(ro, ["touch", "/x"])
    assert r.exit_code != 0 and b"Read-only" in r.stderr
    assert svc.exec(ro, ["touch", "/tmp/x"]).exit_code != 0


def test_shared_pid_namespace(svc):
    pb = svc.pb
    pod, cfg = svc.pod("shared", shared_pid=True)
    # The kubelet repeats the pod's PID mode in each container's options.
    nso = pb.NamespaceOption(pid=pb.POD)
    a = svc.ctr(pod, cfg, "a", ["sleep", "3600"], namespace_options=nso)
    b = svc.ctr(pod, cfg, "b", ["sleep", "3601"], namespace_options=nso)
    svc.wait_state(b, pb.CONTAINER_RUNNING)
    r = svc.exec(a, ["ps"])
    assert b"sleep 3601" in r.stdout and b"pause" in r.stdout


def test_restart_keeps_running_containers(svc):
    pb = svc.pb
    pod, cfg = svc.pod("survivor")
    c = svc.ctr(pod, cfg, "c", ["sleep", "3600"])
    quick = svc.ctr(pod, cfg, "quick", ["sh", "-c", "sleep 2; exit 5"])
    svc.d.stop()
    time.sleep(3)
    svc.d.start()
    svc.cri = svc.d.cri(timeout=60)
    assert svc.status(c).status.state == pb.CONTAINER_RUNNING
    s = svc.wait_state(quick, pb.CONTAINER_EXITED)
    assert s.exit_code == 5
    assert svc.exec(c, ["true"]).exit_code == 0
    svc.cri.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0))
    assert svc.status(c).status.state == pb.CONTAINER_EXITED


def test_cgroup_parent_update_and_reopen_log(svc):
    pb = svc.pb
    parent = "/pcsvc-" + uuid.uuid4().hex[:8]
    uid = uuid.uuid4().hex
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="cg", namespace="smoke", uid=uid),
        log_directory=os.path.join(svc.logdir, uid),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER))))
    pod = svc.cri.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        c = svc.ctr(pod, cfg, "tick", ["sh", "-c", "while true; do echo x; sleep 0.1; done"])
        svc.wait_state(c, pb.CONTAINER_RUNNING)
        limit = os.path.join("/sys/fs/cgroup/memory", parent.lstrip("/"), c,
                             "memory.limit_in_bytes")
        if not os.path.exists(limit):
            limit = os.path.join("/sys/fs/cgroup", parent.lstrip("/"), c, "memory.max")
        assert os.path.exists(limit), "container cgroup not under the pod's cgroup parent"
        svc.cri.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
            container_id=c, linux=pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20)))
        assert int(open(limit).read().strip()) == 64 << 20
        st = svc.status(c).status
        assert st.resources.linux.memory_limit_in_bytes == 64 << 20

        log = st.log_path
        os.rename(log, log + ".1")
        svc.cri.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=c))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                os.path.exists(log) and os.path.getsize(log) > 0):
            time.sleep(0.1)
        assert os.path.getsize(log) > 0
        svc.cri.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0))
        with pytest.raises(grpc.RpcError) as e:
            svc.cri.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=c))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        svc.cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
        for base in os.listdir("/sys/fs/cgroup"):
            d = os.path.join("/sys/fs/cgroup", base, parent.lstrip("/"))
            if os.path.isdir(d):
                os.rmdir(d)
