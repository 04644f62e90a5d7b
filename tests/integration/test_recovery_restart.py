"""The runtime restarting under running pods (DESIGN: edge life): SIGKILL
and SIGTERM of the daemon with pods and containers running, and a
simulated reboot (processes, mounts, cgroups and the state dir gone).

After a restart List/Status answer as before, running containers still run
and keep logging without a gap, an exit that happened while the daemon was
down is reported with its real code, and exec/stop still work.  After a
reboot pods are NOTREADY, containers EXITED, and Stop/Remove clean up.
"""

import signal
import time

import pytest

from lib_pods import (log_lines, pod_images, podenv, podenv_factory,  # noqa: F401
                      wait_for)

TICKER = ("trap 'echo term-received; exit 0' TERM; i=0; "
          "while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")


def ticks(path):
    return [int(c.split()[1]) for s, c in log_lines(path, "stdout") if c.startswith(b"tick ")]


def snapshot(env):
    pb = env.pb
    pods = {p.id: p for p in env.k.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    ctrs = {c.id: c for c in env.k.ListContainers(pb.ListContainersRequest()).containers}
    pst = {p: env.pod_status(p) for p in pods}
    cst = {c: env.ctr_status(c) for c in ctrs}
    return pods, ctrs, pst, cst


def setup_world(env):
    pb = env.pb
    env.pull()
    p1, c1 = env.run_pod(annotations={"picotest/json": '{"k":["v"]}'})
    p2, c2 = env.run_pod(pid=pb.POD, labels={"picotest": "shared-pid"})
    t0 = time.time_ns()
    ids = {
        "ticker": env.create_start(p1, c1, "ticker", ["/bin/sh", "-c", TICKER]),
        "exiter": env.create_start(p1, c1, "exiter", ["/bin/sh", "-c", "sleep 4; exit 42"]),
        "sleeper": env.create_start(p2, c2, "sleeper", ["sleep", "3600"]),
    }
    log = env.log_path(c1, "ticker")
    wait_for(lambda: len(ticks(log)) >= 5, 20, "ticks")
    return (p1, c1), (p2, c2), ids, log, t0


def check_after_restart(env, before, ids, log, t_up):
    pb = env.pb
    pods, ctrs, pst, cst = snapshot(env)
    bpods, bctrs, bpst, bcst = before
    assert set(pods) == set(bpods) and set(ctrs) == set(bctrs)
    for p, st in pst.items():
        b = bpst[p]
        assert st.state == pb.SANDBOX_READY
        assert (st.metadata, st.created_at, st.network.ip) == (b.metadata, b.created_at,
                                                               b.network.ip)
        assert dict(st.labels) == dict(b.labels) and dict(st.annotations) == dict(b.annotations)
        assert pods[p] == bpods[p], "ListPodSandbox entry changed across the restart"
    for name in ("ticker", "sleeper"):
        st, b = cst[ids[name]], bcst[ids[name]]
        assert st.state == pb.CONTAINER_RUNNING, (name, st)
        assert (st.started_at, st.created_at, st.log_path) == (b.started_at, b.created_at,
                                                              b.log_path)
        assert dict(st.annotations) == dict(b.annotations)
    ex = cst[ids["exiter"]]
    assert ex.state == pb.CONTAINER_EXITED and ex.exit_code == 42 and ex.reason == "Error", ex
    assert ex.started_at < ex.finished_at < t_up, "finished_at must be the real exit time"
    # The ticker kept logging while the daemon was away: no gap, and more.
    n = len(ticks(log))
    wait_for(lambda: len(ticks(log)) > n + 5, 20, "ticks after the restart")
    seq = ticks(log)
    assert seq == list(range(len(seq))), "log gap or repeat around the restart"
    # The restarted daemon controls the containers again.
    r = env.exec_sync(ids["sleeper"], ["ps", "-o", "args"])
    assert b"sleep 3600" in r.stdout
    env.k.StopContainer(pb.StopContainerRequest(container_id=ids["ticker"], timeout=20))
    st = env.ctr_status(ids["ticker"])
    assert st.state == pb.CONTAINER_EXITED and st.exit_code == 0
    assert (b"stdout", b"term-received") in [(s.encode(), c) for s, c in log_lines(log)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_daemon_restart_keeps_pods(podenv, sig):
    env, pb = podenv, podenv.pb
    (p1, c1), (p2, c2), ids, log, _ = setup_world(env)
    before = snapshot(env)
    rc = env.daemon.stop(sig=sig)
    if sig == signal.SIGTERM:
        assert rc == 0, "daemon exited %r on SIGTERM" % rc
    time.sleep(6)  # the exiter exits while no daemon runs
    t_up = time.time_ns()
    env.daemon.start()
    env.restart_client()
    check_after_restart(env, before, ids, log, t_up)
    for p in (p1, p2):
        env.k.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p))
        env.k.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p))
    assert list(env.k.ListContainers(pb.ListContainersRequest()).containers) == []


def test_restart_twice_quickly(podenv):
    """Two restarts back to back (an upgrade retried): still consistent."""
    env = podenv
    (p1, c1), _, ids, log, _ = setup_world(env)
    before = snapshot(env)
    env.daemon.stop(sig=signal.SIGKILL)
    env.daemon.start()
    env.daemon.stop(sig=signal.SIGKILL)
    time.sleep(5)
    t_up = time.time_ns()
    env.daemon.start()
    env.restart_client()
    check_after_restart(env, before, ids, log, t_up)


def test_reboot(podenv):
    env, pb = podenv, podenv.pb
    (p1, c1), (p2, c2), ids, log, _ = setup_world(env)
    pods_before, ctrs_before, _, _ = snapshot(env)
    assert env.daemon.stop() == 0
    env.simulate_reboot()
    env.daemon.start()
    env.restart_client()
    pods, ctrs, pst, cst = snapshot(env)
    assert set(pods) == set(pods_before) and set(ctrs) == set(ctrs_before)
    for p, st in pst.items():
        assert st.state == pb.SANDBOX_NOTREADY, st
        assert dict(st.labels) == dict(pods_before[p].labels)
    for c, st in cst.items():
        assert st.state == pb.CONTAINER_EXITED, st
        assert st.finished_at >= st.started_at
    # The kubelet then stops and removes everything; all must succeed.
    for c in ctrs:
        env.k.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0))
        env.k.RemoveContainer(pb.RemoveContainerRequest(container_id=c))
    for p in pods:
        env.k.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p))
        env.k.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p))
    assert list(env.k.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
    # A new pod with the same name (a new attempt) works after the reboot.
    pid, _ = env.run_pod()
    env.k.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid))
