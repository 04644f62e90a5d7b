"""Pod benchmarks: picocri vs containerd 1.6 (CRI plugin, runc), same client,
same images (busybox pulled from a local docker-registry), same CNI
configuration (bridge + host-local + loopback + portmap from /usr/lib/cni).

What: `workload_pods(rt, cri, opts)` starts a fresh instance of the runtime
`rt` is (picocri or containerd) inside its own network namespace (so the
pod bridge, veths and iptables rules live there), with a registry serving
the test images in that namespace, and measures:
  - pod start latency (RunPodSandbox + CreateContainer + StartContainer of
    one `sleep` container) p50/p90 over PODS (30) pods started in sequence;
  - memory (PSS, and RSS) of the runtime with 0, 1, 10 and 30 pods: the
    daemon plus every per-pod/per-container process it runs (monitors,
    shims, infra/pause), without the containers' own workload processes;
  - stop+remove time per pod as kubelet does it (StopContainer with a 30 s
    grace, StopPodSandbox, RemovePodSandbox) p50/p90; the workload exits on
    SIGTERM, so neither runtime waits out the grace;
  - CPU time and wake-ups (voluntary context switches) of those processes
    while idle IDLE_S (60) seconds with 10 pods.

Why: DESIGN.md principle 6; pod start latency and per-pod memory are what
picocri must beat containerd on.

Invariants: everything made here (netns, registry, mounts, cgroups, CNI
leases, processes the runtime left) is removed in `finally`; only processes
descending from the runtime we started (or in its cgroups) are signalled,
by PID.  Tunables: PICOBENCH_PODS (30), PICOBENCH_IDLE_S (60).
"""

import atexit
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cri_harness  # noqa: E402
import grpc  # noqa: E402
import lib_pods  # noqa: E402

PODS = int(os.environ.get("PICOBENCH_PODS", "30"))
IDLE_S = float(os.environ.get("PICOBENCH_IDLE_S", "60"))
# The workload: exits on SIGTERM (a bare sleep as PID 1 would ignore it and
# every stop would wait out the grace).  Its processes are not the runtime's.
WORKLOAD_CMD = ["sh", "-c", "trap 'exit 0' TERM; sleep 3601 & wait"]
WORKLOAD_PROCS = {" ".join(WORKLOAD_CMD), "sleep 3601"}
STOP_GRACE_S = 30
_store = None


class Metric:
    def __init__(self, name, value, unit, better="lower"):
        self.name, self.value, self.unit, self.better = name, value, unit, better


def _images():
    global _store
    if _store is None:
        tmp = cri_harness.mkworkdir("pcbench-img-")
        atexit.register(shutil.rmtree, tmp, True)
        _store = lib_pods.ImageStore(tmp)
    return _store


class BenchEnv:
    """What lib_pods' config builders need, plus the isolation pieces."""

    def __init__(self, pb):
        self.pb = pb
        self.tag = lib_pods.rand_hex(8)
        self.tmp = cri_harness.mkworkdir("pcbench-pods-")
        self.logroot = os.path.join(self.tmp, "pods")
        os.makedirs(self.logroot)
        self.cgroot = "/" + lib_pods.MARK_PREFIX + self.tag
        self.netname = "pt-" + self.tag
        self.bridge = "ptbr" + self.tag[:6]
        self.subnet = "10.%d.%d.0/24" % (int(self.tag[:2], 16) % 200 + 20,
                                         int(self.tag[2:4], 16) % 250)
        self.conf_dir = os.path.join(self.tmp, "cni")
        os.makedirs(self.conf_dir)
        self.image_ref = None
        self.netns = lib_pods.Netns()
        self.registry = None
        try:
            self.registry = lib_pods.NetnsRegistry(self.netns, _images(),
                                                   os.path.join(self.tmp, "reg"))
        except BaseException:
            self.netns.delete()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        lib_pods.write_json_atomic(os.path.join(self.conf_dir, "10-bench.conflist"),
                                   lib_pods.conflist(self.netname, self.bridge, self.subnet))

    def cgroup_parent(self, uid):
        return "%s/pod%s" % (self.cgroot, uid)

    def cleanup(self, workdir):
        skip = {os.getpid()} | ({self.registry.proc.pid} if self.registry else set())
        lib_pods.kill_left(workdir, self.cgroot, skip)
        for mp in sorted(lib_pods.mounts_under(workdir, self.tmp), key=len, reverse=True):
            lib_pods.sh("umount", "-l", mp, check=False)
        for cg in sorted(lib_pods.cgroup_dirs(self.cgroot), key=len, reverse=True):
            try:
                os.rmdir(cg)
            except OSError:
                pass
        if self.registry:
            self.registry.stop()
        self.netns.delete()
        shutil.rmtree("/var/lib/cni/networks/" + self.netname, ignore_errors=True)
        if os.path.isdir("/var/lib/cni/results"):
            for f in os.listdir("/var/lib/cni/results"):
                if f.startswith(self.netname + "-"):
                    os.unlink(os.path.join("/var/lib/cni/results", f))
        shutil.rmtree(self.tmp, ignore_errors=True)


def _netns_runtime(rt, env):
    """A fresh runtime of rt's kind, spawned inside env's netns."""
    base = type(rt)
    prefix = ["nsenter", "--net=/run/netns/" + env.netns.name, "--"]

    class InNetns(base):
        def spawn(self, argv, env_=None):
            return base.spawn(self, prefix + argv, env_)

        def start(self):
            if base.name == "containerd":
                cfg = lib_pods.write_containerd_config(self.workdir, self.sock, lib_pods.CNI_BIN,
                                                       env.conf_dir)
                self.spawn([self.binary, "--config", cfg])
            else:
                for k in ("root", "state"):
                    os.makedirs(os.path.join(self.workdir, k))
                self.spawn([self.binary, "serve", "--socket", self.sock,
                            "--root", os.path.join(self.workdir, "root"),
                            "--state", os.path.join(self.workdir, "state"),
                            "--log-level", "info", "--cni-conf-dir", env.conf_dir,
                            "--cni-bin-dir", lib_pods.CNI_BIN, "--cgroup-driver", "cgroupfs"])
            return self.wait_ready()

    new = InNetns(rt.pb, rt.binary)
    return new


def runtime_pids(rt):
    """The daemon, every process whose command line names its work dir
    (monitors, shims) and their descendants, minus the workload."""
    kids = _children()
    roots = [rt.pid()] + [p for p, _ in lib_pods.procs_with(rt.workdir, {os.getpid()})]
    seen, todo = set(), list(roots)
    while todo and len(seen) < 20000:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    out = []
    for p in seen:
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        if cmd not in WORKLOAD_PROCS:
            out.append(p)
    return out


def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(d))
    return kids


def mem_kib(pids):
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    parts = line.split()
                    if parts[0] == "Rss:":
                        rss += int(parts[1])
                    elif parts[0] == "Pss:":
                        pss += int(parts[1])
        except OSError:
            pass
    return rss, pss


def cpu_and_wakeups(pids):
    tick = os.sysconf("SC_CLK_TCK")
    cpu, vol = 0.0, 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
            fields = st[st.rfind(")") + 2:].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/status" % (p, tid)) as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches:"):
                            vol += int(line.split()[1])
        except OSError:
            pass
    return cpu, vol


def _pct(vals, q):
    vals = sorted(vals)
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, max(0, int(round(q / 100.0 * (len(vals) - 1)))))]


def workload_pods(rt, cri_unused, opts):
    """See the module docstring.  When the runtime cannot run pods (yet) it
    says why on stderr and returns what it measured before that."""
    pb = rt.pb
    env = BenchEnv(pb)
    nrt = _netns_runtime(rt, env)
    try:
        nrt.start()
        ch = cri_harness.unix_channel(nrt.sock)
        cri = cri_harness.Cri(ch, pb, 120)
        out = []
        try:
            _measure(nrt, cri, env, out)
        except grpc.RpcError as e:
            # Not able to run pods (yet): say why, keep what was measured.
            print("bench: pods on %s stopped: %s %s" % (rt.name, e.code().name, e.details()),
                  file=sys.stderr)
        finally:
            _stop_remove_all(cri, pb)
            ch.close()
        return out
    finally:
        nrt.stop()
        env.cleanup(nrt.workdir)
        nrt.cleanup()


def _stop_remove_all(cri, pb):
    try:
        for p in cri.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
            cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))
    except grpc.RpcError:
        pass


def _stop_remove(cri, pb, pid, cid):
    """Seconds to stop and remove one pod the way kubelet does."""
    t0 = time.perf_counter()
    cri.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=STOP_GRACE_S),
                      timeout=STOP_GRACE_S + 30)
    cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pid))
    cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pid))
    return time.perf_counter() - t0


def _measure(rt, cri, env, out):
    pb = env.pb
    # Images first (containerd also pulls its sandbox image up front), and
    # the network ready, so neither counts in the first pod's latency.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conds = {c.type: c.status for c in cri.Status().status.conditions}
        if conds.get("NetworkReady"):
            break
        time.sleep(0.1)
    env.image_ref = cri.PullImage(pb.PullImageRequest(
        image=pb.ImageSpec(image=lib_pods.IMAGE)), timeout=300).image_ref
    if rt.name == "containerd":
        cri.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=lib_pods.PAUSE_IMAGE)),
                      timeout=300)
    time.sleep(2)
    rss, pss = mem_kib(runtime_pids(rt))
    out.append(Metric("runtime PSS, 0 pods", pss / 1024.0, "MiB"))
    lat, pods, mem_at = [], [], {}
    for i in range(PODS):
        pcfg = lib_pods.pod_config(env, name="bench-%d" % i)
        ccfg = lib_pods.container_config(env, pcfg, "c", WORKLOAD_CMD)
        t0 = time.perf_counter()
        pid = cri.RunPodSandbox(pb.RunPodSandboxRequest(config=pcfg)).pod_sandbox_id
        cid = cri.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pid, config=ccfg, sandbox_config=pcfg)).container_id
        cri.StartContainer(pb.StartContainerRequest(container_id=cid))
        lat.append(time.perf_counter() - t0)
        pods.append((pid, cid))
        if len(pods) in (1, 10, PODS):
            time.sleep(2)
            mem_at[len(pods)] = mem_kib(runtime_pids(rt))
    out += [Metric("pod start p50 (run+create+start)", _pct(lat, 50) * 1000, "ms"),
            Metric("pod start p90 (run+create+start)", _pct(lat, 90) * 1000, "ms")]
    for n in sorted(mem_at):
        out.append(Metric("runtime PSS, %d pods" % n, mem_at[n][1] / 1024.0, "MiB"))
    out.append(Metric("runtime RSS, %d pods" % PODS, mem_at[PODS][0] / 1024.0, "MiB"))
    if PODS > 1:
        out.append(Metric("PSS per extra pod", (mem_at[PODS][1] - mem_at[1][1]) / 1024.0
                          / (PODS - 1), "MiB"))
    # Down to 10 pods, timing stop+remove of each.
    stop_lat = []
    while len(pods) > min(10, PODS):
        stop_lat.append(_stop_remove(cri, pb, *pods.pop()))
    # Idle with 10 pods: CPU and wake-ups of the runtime's processes.
    time.sleep(2)
    procs = runtime_pids(rt)
    cpu0, vol0 = cpu_and_wakeups(procs)
    time.sleep(IDLE_S)
    cpu1, vol1 = cpu_and_wakeups(procs)
    out += [Metric("idle CPU, %d pods, %.0f s" % (len(pods), IDLE_S), (cpu1 - cpu0) * 1000, "ms"),
            Metric("idle wake-ups/s, %d pods" % len(pods), (vol1 - vol0) / IDLE_S, "1/s"),
            Metric("runtime processes, %d pods" % len(pods), len(procs), "count")]
    while pods:
        stop_lat.append(_stop_remove(cri, pb, *pods.pop()))
    out += [Metric("pod stop+remove p50", _pct(stop_lat, 50) * 1000, "ms"),
            Metric("pod stop+remove p90", _pct(stop_lat, 90) * 1000, "ms"),
            Metric("load average (1 min) during pods", os.getloadavg()[0], "load")]
