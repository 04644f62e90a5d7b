"""Containers as a kubelet drives them (critest pkg/validate/container.go,
container_linux.go, security_context_linux.go inspired): pull, run pod,
create/start, ContainerStatus/ListContainers, ExecSync, the CRI log file,
stats, stop with grace, remove; host and pod network, shared PID
namespace, read-only root, run_as_user, non-zero exit, OOM kill, filters,
idempotency, NOT_FOUND / INVALID_ARGUMENT, duplicate names,
UpdateContainerResources and ReopenContainerLog.

Images are pulled with PullImage from a registry in the test's network
namespace; every RPC still UNIMPLEMENTED skips its test ("X not implemented
yet").  Each test's teardown checks that nothing leaked.
"""

import os
import re
import time

import grpc
import pytest

from lib_pods import (RUNTIME, container_config, find_cgroup, log_lines,  # noqa: F401
                      pod_images, podenv, podenv_factory, read_cri_log, wait_for)

C = grpc.StatusCode
TICKER = ("trap 'echo term-received; exit 0' TERM; i=0; "
          "while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")


def sh_cmd(script):
    return ["/bin/sh", "-c", script]


def list_ctrs(env, **flt):
    pb = env.pb
    f = pb.ContainerFilter(**{k: v for k, v in flt.items() if k != "state"})
    if "state" in flt:
        f.state.state = flt["state"]
    return list(env.k.ListContainers(pb.ListContainersRequest(filter=f)).containers)


def stop(env, cid, timeout=0):
    env.k.StopContainer(env.pb.StopContainerRequest(container_id=cid, timeout=timeout),
                        timeout=timeout + 60)


def remove(env, cid):
    env.k.RemoveContainer(env.pb.RemoveContainerRequest(container_id=cid))


def remove_pod(env, pid):
    env.k.StopPodSandbox(env.pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    env.k.RemovePodSandbox(env.pb.RemovePodSandboxRequest(pod_sandbox_id=pid))


def ticks(path):
    return [int(c.split()[1]) for s, c in log_lines(path, "stdout") if c.startswith(b"tick ")]


def netns_id(path):
    return "net:[%d]" % os.stat(path).st_ino


@pytest.mark.parametrize("host_network", [False, True], ids=["podnet", "hostnet"])
def test_kubelet_sequence(podenv, host_network):
    env, pb = podenv, podenv.pb
    env.pull()
    pid, pcfg = env.run_pod(host_network=host_network)
    a_cfg = container_config(env, pcfg, "ticker", sh_cmd(TICKER), envs={"FOO": "bar baz"})
    b_cfg = container_config(env, pcfg, "sleeper", ["sleep", "3600"])
    a = env.create(pid, pcfg, a_cfg)
    b = env.create(pid, pcfg, b_cfg)
    assert a != b
    st = env.ctr_status(a)
    assert st.state == pb.CONTAINER_CREATED and st.created_at > 0 and st.started_at == 0
    env.k.StartContainer(pb.StartContainerRequest(container_id=a))
    env.k.StartContainer(pb.StartContainerRequest(container_id=b))

    for cid, cfg in ((a, a_cfg), (b, b_cfg)):
        st = env.ctr_status(cid)
        assert st.id == cid and st.metadata == cfg.metadata
        assert st.state == pb.CONTAINER_RUNNING
        now = time.time_ns()
        assert 0 < st.created_at <= st.started_at <= now
        assert st.finished_at == 0 and st.exit_code == 0 and st.reason == ""
        assert st.image.image and st.image_ref, "kubelet needs image.image and image_ref"
        assert dict(st.labels) == dict(cfg.labels)
        assert dict(st.annotations) == dict(cfg.annotations)
        assert st.log_path == env.log_path(pcfg, cfg.metadata.name)
    listed = {c.id: c for c in list_ctrs(env, pod_sandbox_id=pid)}
    assert set(listed) == {a, b}
    for cid, cfg in ((a, a_cfg), (b, b_cfg)):
        c = listed[cid]
        assert c.pod_sandbox_id == pid and c.metadata == cfg.metadata
        assert c.state == pb.CONTAINER_RUNNING and c.image.image and c.image_ref
        assert dict(c.labels) == dict(cfg.labels) and dict(c.annotations) == dict(cfg.annotations)

    # ExecSync: stdout, stderr, exit code, the container's environment.
    r = env.exec_sync(a, sh_cmd("echo out; echo err >&2; exit 3"))
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3)
    r = env.exec_sync(a, ["env"])
    assert b"FOO=bar baz\n" in r.stdout and r.exit_code == 0
    # network namespace: the daemon's (host network) or the pod's own
    r = env.exec_sync(b, ["readlink", "/proc/self/ns/net"])
    host_ns = netns_id("/run/netns/" + env.netns.name)
    if host_network:
        assert r.stdout.decode().strip() == host_ns
    else:
        assert r.stdout.decode().strip() != host_ns
        ip = env.pod_ip(pid)
        r = env.exec_sync(b, ["ip", "-o", "-4", "addr", "show", "eth0"])
        assert (" %s/" % ip).encode() in r.stdout, r.stdout

    # The log keeps growing in CRI format.
    log = env.log_path(pcfg, "ticker")
    wait_for(lambda: len(ticks(log)) >= 5, 20, "5 ticks in " + log)

    # Stats.
    s = env.k.ContainerStats(pb.ContainerStatsRequest(container_id=a)).stats
    assert s.attributes.id == a and s.attributes.metadata == a_cfg.metadata
    assert dict(s.attributes.labels) == dict(a_cfg.labels)
    assert s.cpu.timestamp > 0 and s.cpu.HasField("usage_core_nano_seconds")
    assert s.memory.timestamp > 0 and s.memory.working_set_bytes.value > 0
    ls = env.k.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=pid))).stats
    assert sorted(x.attributes.id for x in ls) == sorted([a, b])
    ps = env.k.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pid)).stats
    assert ps.attributes.id == pid and ps.attributes.metadata == pcfg.metadata
    assert ps.linux.cpu.timestamp > 0 and ps.linux.memory.timestamp > 0
    lps = env.k.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(
        filter=pb.PodSandboxStatsFilter(id=pid))).stats
    assert [x.attributes.id for x in lps] == [pid]

    # Stop with grace: the ticker traps SIGTERM, prints and exits 0.
    t0 = time.monotonic()
    stop(env, a, timeout=20)
    assert time.monotonic() - t0 < 10, "a SIGTERM-trapping container took the whole grace"
    st = env.ctr_status(a)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0, st
    assert st.reason == "Completed" and st.finished_at >= st.started_at
    assert (b"stdout", b"term-received") in [(s.encode(), c) for s, c in log_lines(log)]
    # sleep is PID 1 and ignores SIGTERM: SIGKILL after the grace period.
    t0 = time.monotonic()
    stop(env, b, timeout=2)
    took = time.monotonic() - t0
    assert 1.5 <= took < 15, "StopContainer(timeout=2) took %.1fs" % took
    st = env.ctr_status(b)
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 137, st

    stop(env, a, timeout=0)  # EXITED: idempotent
    remove(env, a)
    remove(env, a)  # gone: idempotent
    remove(env, b)
    env.k.expect("ContainerStatus", pb.ContainerStatusRequest(container_id=a), C.NOT_FOUND)
    assert os.path.exists(log), "RemoveContainer must leave the log file to the kubelet"
    assert list_ctrs(env) == []
    remove_pod(env, pid)


def test_exec_sync_timeout_and_limits(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod()
    cid = env.create_start(pid, pcfg, "c", ["sleep", "3600"])
    t0 = time.monotonic()
    e = env.k.error("ExecSync", pb.ExecSyncRequest(container_id=cid, cmd=["sleep", "41"],
                                                   timeout=2), timeout=60)
    took = time.monotonic() - t0
    assert e.code() == C.DEADLINE_EXCEEDED, e
    assert took < 20, "ExecSync timeout=2 returned after %.1fs" % took
    wait_for(lambda: b"sleep 41" not in env.exec_sync(cid, ["ps", "-o", "args"]).stdout, 10,
             "the timed-out exec process to be killed")
    r = env.exec_sync(cid, sh_cmd("head -c 1048576 /dev/zero | tr '\\0' x"), timeout=0)
    assert r.exit_code == 0 and r.stdout == b"x" * 1048576
    r = env.exec_sync(cid, sh_cmd("exit 0"))
    assert (r.stdout, r.stderr, r.exit_code) == (b"", b"", 0)
    stop(env, cid)
    e = env.k.error("ExecSync", pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=5))
    assert e.code() != C.OK
    remove_pod(env, pid)
    assert list_ctrs(env) == []


def test_log_format(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod()
    script = ("echo out-line; echo err-line >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; "
              "echo; printf 'no-newline'")
    cid = env.create_start(pid, pcfg, "logger", sh_cmd(script))
    st = env.wait_state(cid, pb.CONTAINER_EXITED)
    assert st.exit_code == 0 and st.reason == "Completed", st
    path = env.log_path(pcfg, "logger")
    assert st.log_path == path
    recs = read_cri_log(path)
    for ts, _, _, _ in recs:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z$", ts), ts
    out = [c for s, c in log_lines(path, "stdout")]
    err = [c for s, c in log_lines(path, "stderr")]
    assert out == [b"out-line", b"a" * 40000, b"", b"no-newline"], [o[:20] for o in out]
    assert err == [b"err-line"]
    # the 40000-byte line is split into P records then one F
    long_recs = [r for r in recs if r[1] == "stdout" and r[3] and set(r[3]) == {ord("a")}]
    assert sum(len(r[3]) for r in long_recs) == 40000
    assert [r[2] for r in long_recs][-1] == "F"
    remove_pod(env, pid)


def test_shared_pid_namespace(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod(pid=pb.POD)
    a = env.create_start(pid, pcfg, "a", ["sleep", "3601"])
    b = env.create_start(pid, pcfg, "b", ["sleep", "3602"])
    r = env.exec_sync(b, ["ps", "-o", "pid,args"])
    assert b"sleep 3601" in r.stdout and b"sleep 3602" in r.stdout, r.stdout
    init = env.exec_sync(a, ["cat", "/proc/1/cmdline"]).stdout
    assert init and b"3601" not in init and b"3602" not in init, \
        "PID 1 of a shared PID namespace must be the infra process, not %r" % init
    remove_pod(env, pid)


def test_private_pid_namespace(podenv):
    env = podenv
    pid, pcfg = env.run_pod()
    env.create_start(pid, pcfg, "a", ["sleep", "3601"])
    b = env.create_start(pid, pcfg, "b", ["sleep", "3602"])
    r = env.exec_sync(b, ["ps", "-o", "pid,args"])
    assert b"sleep 3601" not in r.stdout
    assert env.exec_sync(b, ["cat", "/proc/1/cmdline"]).stdout == b"sleep\x003602\x00"
    remove_pod(env, pid)


def test_readonly_rootfs_and_run_as_user(podenv):
    env = podenv
    pid, pcfg = env.run_pod()
    ro = env.create_start(pid, pcfg, "ro", ["sleep", "3600"], readonly_rootfs=True)
    r = env.exec_sync(ro, ["touch", "/newfile"])
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r
    rw = env.create_start(pid, pcfg, "rw", ["sleep", "3600"])
    assert env.exec_sync(rw, ["touch", "/newfile"]).exit_code == 0
    u = env.create_start(pid, pcfg, "user", sh_cmd("id -u; exec sleep 3600"), run_as_user=1000)
    r = env.exec_sync(u, ["id", "-u"])
    assert r.stdout == b"1000\n", r
    log = env.log_path(pcfg, "user")
    wait_for(lambda: os.path.exists(log) and log_lines(log), 10, "output of id -u")
    assert log_lines(log)[0] == ("stdout", b"1000")
    remove_pod(env, pid)


def test_exit_codes_and_oom(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod()
    bad = env.create_start(pid, pcfg, "bad", sh_cmd("echo bye; exit 7"))
    oom = env.create_start(pid, pcfg, "oom",
                           sh_cmd("echo start; x=aaaaaaaa; while true; do x=\"$x$x\"; done"),
                           memory_limit=32 << 20)
    st = env.wait_state(bad, pb.CONTAINER_EXITED)
    assert st.exit_code == 7 and st.reason == "Error", st
    assert st.finished_at >= st.started_at > 0
    st = env.wait_state(oom, pb.CONTAINER_EXITED, timeout=90)
    assert st.reason == "OOMKilled" and st.exit_code == 137, st
    remove(env, bad)
    remove(env, oom)
    remove_pod(env, pid)


def test_container_filters(podenv):
    env, pb = podenv, podenv.pb
    p1, c1 = env.run_pod()
    p2, c2 = env.run_pod(host_network=True)
    env.pull()
    a = env.create_start(p1, c1, "a", ["sleep", "3600"], labels={"role": "web"})
    b = env.create(p1, c1, container_config(env, c1, "b", ["sleep", "3600"],
                                            labels={"role": "db"}))
    c = env.create_start(p2, c2, "c", ["sleep", "3600"], labels={"role": "web"})
    ids = lambda items: sorted(i.id for i in items)  # noqa: E731
    assert ids(list_ctrs(env)) == sorted([a, b, c])
    assert ids(list_ctrs(env, id=a)) == [a]
    assert ids(list_ctrs(env, id=a[:12])) == [a], "id prefix filter"
    assert ids(list_ctrs(env, pod_sandbox_id=p1)) == sorted([a, b])
    assert ids(list_ctrs(env, state=pb.CONTAINER_RUNNING)) == sorted([a, c])
    assert ids(list_ctrs(env, state=pb.CONTAINER_CREATED)) == [b]
    assert ids(list_ctrs(env, state=pb.CONTAINER_EXITED)) == []
    assert ids(list_ctrs(env, label_selector={"role": "web"})) == sorted([a, c])
    assert ids(list_ctrs(env, label_selector={"role": "web"}, pod_sandbox_id=p2)) == [c]
    assert ids(list_ctrs(env, label_selector={"io.kubernetes.container.name": "b"})) == [b]
    assert ids(list_ctrs(env, id=a, pod_sandbox_id=p2)) == []
    stats = env.k.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(label_selector={"role": "web"}))).stats
    assert sorted(s.attributes.id for s in stats) == sorted([a, c])
    # StopPodSandbox stops its containers; RemovePodSandbox removes them.
    env.k.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p1))
    assert env.ctr_status(a).state == pb.CONTAINER_EXITED
    assert env.ctr_status(b).state in (pb.CONTAINER_CREATED, pb.CONTAINER_EXITED)
    env.k.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p1))
    assert ids(list_ctrs(env)) == [c]
    # RemoveContainer of a running container forces it.
    remove(env, c)
    assert list_ctrs(env) == []
    remove_pod(env, p2)


def test_unknown_ids_and_invalid_requests(podenv):
    env, pb = podenv, podenv.pb
    u = "e" * 64
    nf = [("ContainerStatus", pb.ContainerStatusRequest(container_id=u)),
          ("StartContainer", pb.StartContainerRequest(container_id=u)),
          ("StopContainer", pb.StopContainerRequest(container_id=u, timeout=1)),
          ("ContainerStats", pb.ContainerStatsRequest(container_id=u)),
          ("ExecSync", pb.ExecSyncRequest(container_id=u, cmd=["true"], timeout=1)),
          ("UpdateContainerResources", pb.UpdateContainerResourcesRequest(
              container_id=u, linux=pb.LinuxContainerResources(cpu_shares=512))),
          ("ReopenContainerLog", pb.ReopenContainerLogRequest(container_id=u))]
    for name, req in nf:
        env.k.expect(name, req, C.NOT_FOUND)
    env.k.RemoveContainer(pb.RemoveContainerRequest(container_id=u))  # idempotent

    pid, pcfg = env.run_pod(host_network=True)
    env.pull()
    good = container_config(env, pcfg, "c", ["sleep", "3600"])
    mutations = [lambda c: c.ClearField("metadata"), lambda c: c.ClearField("image")]
    if RUNTIME != "containerd":  # containerd 1.6 accepts an empty name
        mutations.append(lambda c: setattr(c.metadata, "name", ""))
    for mutate in mutations:
        cfg = pb.ContainerConfig()
        cfg.CopyFrom(good)
        mutate(cfg)
        env.k.expect("CreateContainer", pb.CreateContainerRequest(
            pod_sandbox_id=pid, config=cfg, sandbox_config=pcfg), C.INVALID_ARGUMENT)
    env.k.expect("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pid, sandbox_config=pcfg), C.INVALID_ARGUMENT)
    env.k.expect("CreateContainer", pb.CreateContainerRequest(
        config=good, sandbox_config=pcfg), C.INVALID_ARGUMENT, C.NOT_FOUND)
    env.k.expect("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id="d" * 64, config=good, sandbox_config=pcfg), C.NOT_FOUND)
    env.k.expect("ExecSync", pb.ExecSyncRequest(container_id=u, timeout=1),
                 C.INVALID_ARGUMENT, C.NOT_FOUND)
    assert list_ctrs(env) == []

    # Duplicate (name, attempt) in one pod.
    cid = env.create(pid, pcfg, good)
    e = env.k.error("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pid, config=good, sandbox_config=pcfg))
    assert e.code() == C.ALREADY_EXISTS or (e.code() == C.UNKNOWN and "reserved" in e.details()), e
    again = pb.ContainerConfig()
    again.CopyFrom(good)
    again.metadata.attempt = 1
    again.log_path = "c/1.log"
    cid2 = env.create(pid, pcfg, again)
    assert cid2 != cid
    # StartContainer twice: the second fails (not CREATED any more).
    env.k.StartContainer(pb.StartContainerRequest(container_id=cid))
    e = env.k.error("StartContainer", pb.StartContainerRequest(container_id=cid))
    assert e.code() != C.OK
    # A stopped pod takes no new container.
    env.k.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    third = pb.ContainerConfig()
    third.CopyFrom(good)
    third.metadata.name = "late"
    e = env.k.error("CreateContainer", pb.CreateContainerRequest(
        pod_sandbox_id=pid, config=third, sandbox_config=pcfg))
    assert e.code() != C.OK
    env.k.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid))
    assert list_ctrs(env) == []


def read_int(path):
    with open(path) as f:
        return f.read().strip()


def test_update_container_resources(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod()
    cid = env.create_start(pid, pcfg, "c", ["sleep", "3600"], memory_limit=128 << 20)
    v2 = not os.path.isdir("/sys/fs/cgroup/memory")
    if v2:
        cg = find_cgroup(env.cgroot, cid, "")
        assert cg, "no cgroup named after %s below %s" % (cid, env.cgroot)
        assert read_int(cg + "/memory.max") == str(128 << 20)
    else:
        mem = find_cgroup(env.cgroot, cid, "memory")
        cpu = find_cgroup(env.cgroot, cid, "cpu")
        assert mem and cpu, "no cgroup named after %s below %s" % (cid, env.cgroot)
        assert read_int(mem + "/memory.limit_in_bytes") == str(128 << 20)
    new = pb.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                     memory_limit_in_bytes=96 << 20,
                                     memory_swap_limit_in_bytes=96 << 20, oom_score_adj=1000)
    env.k.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id=cid,
                                                                      linux=new))
    if v2:
        assert read_int(cg + "/memory.max") == str(96 << 20)
        assert read_int(cg + "/cpu.max") == "50000 100000"
    else:
        assert read_int(mem + "/memory.limit_in_bytes") == str(96 << 20)
        assert read_int(cpu + "/cpu.cfs_quota_us") == "50000"
        assert read_int(cpu + "/cpu.cfs_period_us") == "100000"
        assert read_int(cpu + "/cpu.shares") == "512"
    st = env.ctr_status(cid)
    assert st.state == pb.CONTAINER_RUNNING
    if st.HasField("resources") and st.resources.HasField("linux"):
        assert st.resources.linux.memory_limit_in_bytes == 96 << 20
        assert st.resources.linux.cpu_quota == 50000
    remove_pod(env, pid)


def test_reopen_container_log(podenv):
    env, pb = podenv, podenv.pb
    pid, pcfg = env.run_pod()
    cid = env.create_start(pid, pcfg, "ticker", sh_cmd(TICKER))
    log = env.log_path(pcfg, "ticker")
    wait_for(lambda: len(ticks(log)) >= 3, 20, "ticks in the log")
    os.rename(log, log + ".20260101-000000")
    env.k.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    assert os.path.exists(log), "ReopenContainerLog returned before creating the file"
    wait_for(lambda: len(ticks(log)) >= 3, 20, "ticks in the reopened log")
    old = ticks(log + ".20260101-000000")
    size = os.path.getsize(log + ".20260101-000000")
    time.sleep(0.5)
    assert os.path.getsize(log + ".20260101-000000") == size, "old file still written"
    new = ticks(log)
    seq = old + new
    assert seq == list(range(seq[0], seq[0] + len(seq))), "ticks lost or repeated: %s | %s" % (
        old[-3:], new[:3])
    stop(env, cid, timeout=10)
    # Not running: either fails without creating a file, or creates it.
    os.rename(log, log + ".2")
    try:
        env.k.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    except grpc.RpcError:
        assert not os.path.exists(log), "a failed ReopenContainerLog created the file"
    remove_pod(env, pid)
