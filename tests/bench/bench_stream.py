"""Streaming benchmark: picocri's streaming server vs containerd 1.6's, same
client, same run.

What: through the URLs that CRI Exec and PortForward return for a real
busybox container in a pod (CNI bridge network):
  - exec round trip of `echo hi` (SPDY upgrade, remote-command v4 streams,
    the process, the Status) p50/p90 over EXECS (200) sessions in
    sequence, and the same including the Exec RPC that issues the URL;
  - port-forward throughput, MB/s for a 200 MB transfer each way: from
    the pod (a busybox `nc -ll -e head -c N /dev/zero` server) and to the
    pod (`nc -ll -e sh -c 'head -c N >/dev/null; echo done'`).
The client is the Go moby/spdystream program of tests/integration
(spdyclient: `exec-loop` and `pf-listen`), the library kubelet and crictl
use.

How: like bench_pods, each runtime is started afresh inside its own
network namespace with a registry serving the test images there; the
client runs in that namespace too (nsenter --net; Python sockets are
connected from a thread that setns()es into it).  picocri gets the busybox
image with `picocri import` (offline, before it starts); containerd pulls
it (and its sandbox image, busybox `sleep 2147483647`, set as
sandbox_image) from the registry.  Registered in harness.py WORKLOADS as
"stream"; standalone: `PICOCRI_BIN=build/host/picocri python3
tests/bench/bench_stream.py [picocri,containerd]`.

Invariants: every process it starts is stopped by PID; every wait is
bounded; the namespace, mounts, cgroups and temporary files are removed in
`finally`.  Tunables: PICOBENCH_STREAM_EXECS (200), PICOBENCH_PF_MB (200).
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import bench_pods  # noqa: E402
import cri_harness  # noqa: E402
import lib_pods  # noqa: E402
import test_stream_spdy  # noqa: E402

EXECS = int(os.environ.get("PICOBENCH_STREAM_EXECS", "200"))
PF_BYTES = int(os.environ.get("PICOBENCH_PF_MB", "200")) * 1000 * 1000
IMPORTED = "docker.io/library/busybox:bench"
PORT_FROM, PORT_TO = 8080, 8081
_client = {}


def _pct(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, max(0, int(round(q / 100.0 * (len(vals) - 1)))))]


def spdyclient():
    """Builds the Go client once per process (the integration suite's
    builder: Debian's golang-go and golang-github-docker-spdystream-dev)."""
    if "path" not in _client:
        tmp = tempfile.mkdtemp(prefix="pcbench-spdy-")
        atexit.register(shutil.rmtree, tmp, True)
        _client["path"] = test_stream_spdy.build_spdyclient(tmp)
    return _client["path"]


def _start_runtime(rt, env):
    """A fresh runtime of rt's kind in env's netns (picocri with the image
    imported first)."""
    nrt = bench_pods._netns_runtime(rt, env)
    if rt.name == "picocri":
        base_spawn = nrt.spawn

        def spawn(argv, env_=None):
            root = os.path.join(nrt.workdir, "root")
            subprocess.run([rt.binary, "import", "--root", root,
                            bench_pods._images().layout.ref("busybox"), IMPORTED],
                           check=True, timeout=300, capture_output=True)
            return base_spawn(argv, env_)
        nrt.spawn = spawn
    nrt.start()
    return nrt


def _wait_listening(env, port):
    """Waits until the pod's server on port answers a connection."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            s = lib_pods.netns_connect(env.netns.name, env.pod_ip, port, timeout=2)
            s.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server on port %d in the pod did not start" % port)


def _exec_bench(cri, pb, env, cid, client, n):
    ns = ["nsenter", "--net=/run/netns/" + env.netns.name, "--"]
    loop = subprocess.Popen(ns + [client, "exec-loop"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stream, total = [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            url = cri.Exec(pb.ExecRequest(container_id=cid, cmd=["echo", "hi"], stdout=True,
                                          stderr=True)).url
            loop.stdin.write(url + "\n")
            loop.stdin.flush()
            line = loop.stdout.readline().split()
            total.append(time.perf_counter() - t0)
            if len(line) != 2 or line[1] != "0":
                raise RuntimeError("exec-loop: %r %s" % (line, loop.stderr.read(2000)))
            stream.append(int(line[0]) / 1e6)
    finally:
        loop.stdin.close()
        try:
            loop.wait(30)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait(10)
    return stream, total


def _pf_bench(cri, pb, env, pod, client):
    """MB/s from the pod and to the pod, one 200 MB transfer each."""
    ns = ["nsenter", "--net=/run/netns/" + env.netns.name, "--"]
    out = []
    for port, direction in ((PORT_FROM, "from"), (PORT_TO, "to")):
        url = cri.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod, port=[port])).url
        pf = subprocess.Popen(ns + [client, "pf-listen", url, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            lport = int(pf.stdout.readline().split()[1])
            s = lib_pods.netns_connect(env.netns.name, "127.0.0.1", lport, timeout=120)
            t0 = time.perf_counter()
            if direction == "from":
                got = 0
                while got < PF_BYTES:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    got += len(d)
                ok = got == PF_BYTES
            else:
                chunk = b"\0" * (1 << 20)
                sent = 0
                while sent < PF_BYTES:
                    n = min(len(chunk), PF_BYTES - sent)
                    s.sendall(chunk[:n])
                    sent += n
                ok = s.recv(16).startswith(b"done")
            secs = time.perf_counter() - t0
            s.close()
            if not ok:
                raise RuntimeError("port-forward %s the pod: short transfer" % direction)
            out.append((direction, PF_BYTES / secs / 1e6))
        finally:
            pf.stdin.close()
            try:
                pf.wait(10)
            except subprocess.TimeoutExpired:
                pf.kill()
                pf.wait(10)
    return out


def _measure(nrt, cri, env):
    pb = env.pb
    if nrt.name == "containerd":
        env.image_ref = cri.PullImage(pb.PullImageRequest(
            image=pb.ImageSpec(image=lib_pods.IMAGE)), timeout=300).image_ref
        cri.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=lib_pods.PAUSE_IMAGE)),
                      timeout=300)
    else:
        env.image_ref = IMPORTED
    pcfg = lib_pods.pod_config(env, name="stream-bench")
    pod = cri.RunPodSandbox(pb.RunPodSandboxRequest(config=pcfg), timeout=120).pod_sandbox_id
    env.pod_ip = cri.PodSandboxStatus(pb.PodSandboxStatusRequest(
        pod_sandbox_id=pod)).status.network.ip
    cids = []
    for name, cmd in (
            ("sh", ["sleep", "3600"]),
            ("from", ["nc", "-ll", "-p", str(PORT_FROM), "-e", "head", "-c", str(PF_BYTES),
                      "/dev/zero"]),
            ("to", ["nc", "-ll", "-p", str(PORT_TO), "-e", "sh", "-c",
                    "head -c %d >/dev/null; echo done" % PF_BYTES])):
        ccfg = lib_pods.container_config(env, pcfg, name, cmd)
        cid = cri.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=ccfg, sandbox_config=pcfg)).container_id
        cri.StartContainer(pb.StartContainerRequest(container_id=cid))
        cids.append(cid)
    client = spdyclient()
    # Warm-up (first exec pays for page faults and lazy set-up on both).
    _exec_bench(cri, pb, env, cids[0], client, 5)
    stream, total = _exec_bench(cri, pb, env, cids[0], client, EXECS)
    # The "from" server sends as soon as a connection arrives: no probe on it.
    _wait_listening(env, PORT_TO)
    pf = _pf_bench(cri, pb, env, pod, client)
    out = [bench_pods.Metric("stream exec echo p50", _pct(stream, 50) * 1000, "ms"),
           bench_pods.Metric("stream exec echo p90", _pct(stream, 90) * 1000, "ms"),
           bench_pods.Metric("Exec RPC + stream p50", _pct(total, 50) * 1000, "ms"),
           bench_pods.Metric("Exec RPC + stream p90", _pct(total, 90) * 1000, "ms")]
    for direction, mbs in pf:
        out.append(bench_pods.Metric("port-forward %d MB %s pod" % (PF_BYTES // 1000000,
                                                                    direction), mbs, "MB/s",
                                     "higher"))
    return out


def workload_stream(rt, cri_unused, opts):
    """Harness entry (see the module docstring): [Metric] for rt's kind."""
    pb = rt.pb
    env = bench_pods.BenchEnv(pb)
    nrt = None
    try:
        nrt = _start_runtime(rt, env)
        ch = cri_harness.unix_channel(nrt.sock)
        cri = cri_harness.Cri(ch, pb, 120)
        try:
            return _measure(nrt, cri, env)
        finally:
            bench_pods._stop_remove_all(cri, pb)
            ch.close()
    finally:
        if nrt is not None:
            nrt.stop()
            env.cleanup(nrt.workdir)
            nrt.cleanup()
        else:
            env.cleanup("/nonexistent-pcbench")


# Alternating rounds (harness --rounds), medians: the machine's noise is shared.
workload_stream.rounds = True


if __name__ == "__main__":
    import harness
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["picocri", "containerd"]
    protodir = cri_harness.mkworkdir("pcbench-proto-")
    try:
        pb = cri_harness.load_proto(protodir)
        for n in names:
            rt = (harness.Picocri(pb, os.environ.get("PICOCRI_BIN", "build/host/picocri"))
                  if n == "picocri" else harness.Containerd(pb))
            try:
                for m in workload_stream(rt, None, None):
                    print("%-12s %-32s %10.2f %s" % (n, m.name, m.value, m.unit))
            finally:
                rt.cleanup()
    finally:
        shutil.rmtree(protodir, ignore_errors=True)
        if "tmp" in _client:
            shutil.rmtree(_client["tmp"], ignore_errors=True)
