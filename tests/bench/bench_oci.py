#!/usr/bin/python3
"""Benchmarks of picocri's executor and monitor (agent/runtime), without CRI.

What: two standalone workloads for harness.py (they get the started CRI
runtimes and return their own table instead of one column per runtime):
- `oci`: one busybox-static bundle whose process is `true`, run with
  `picocri oci run`, `crun run` and `runc run` (Debian's) --oci-runs times
  each, interleaved (every round runs the three in a rotated order), all in
  one private mount namespace; per container, the wall time from spawning
  `<runtime> run` to its exit (create, start, wait, delete): median, p90,
  mean, and the ratios picocri/crun and picocri/runc.
- `monitor`: PSS (/proc/PID/smaps_rollup) of `picocri monitor` holding one
  sleeping container, then the mean over --monitors of them; and the same
  for containerd-shim-runc-v2 holding one sleeping pod sandbox started by
  containerd's CRI plugin (RunPodSandbox, host network, a locally built
  sandbox image: busybox-static with entrypoint /bin/sleep 2147483647,
  imported with `ctr images import`).  PSS splits pages shared with other
  processes (picocri's daemon maps the same binary, as on a node; the page
  cache's folio sizes also decide how much of a binary a fault maps), so
  USS, the process's private pages, is reported beside it.

Why: the issue's acceptance figures (the executor at least as fast as crun,
a monitor under 256 KiB PSS) are measured on the machine, not assumed.

crun 1.8 refuses a hybrid cgroup layout (v1 controllers plus a
controller-less cgroup2 at /sys/fs/cgroup/unified).  The `oci` runs happen
in a child started with `unshare -m --propagation private`, which unmounts
that cgroup2 mount in its own mount namespace only, so all three runtimes
see plain v1; the host's mounts are never changed.

Invariants: every container, monitor and pod sandbox started here is
stopped and deleted (by id, or by PID for processes this module started),
also on failure; every wait is bounded; temporary directories are removed.
"""

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import cri_harness  # noqa: E402
import lib_images  # noqa: E402

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
PAUSE_IMAGE = "localhost/pcbench/pause:1"
OCI_RUNTIMES = ("picocri", "crun", "runc")
RUN_TIMEOUT = 60


def _harness():
    # harness.py registers itself as "harness" (also when run as __main__).
    import harness
    return harness


# ---- bundle ------------------------------------------------------------------
def make_bundle(path, args):
    """A busybox-static bundle with runc's default namespaces and mounts;
    the same config.json is valid for picocri, crun and runc."""
    rootfs = os.path.join(path, "rootfs")
    lib_images.busybox_root(rootfs, ["true", "sleep", "sh"])
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
            "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    cfg = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                            "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                              "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


# ---- oci: picocri oci run vs crun run vs runc run ---------------------------------------
def _oci_argv(rt, binary, root, bundle, cid):
    exe = binary if rt == "picocri" else shutil.which(rt)
    pre = ["oci"] if rt == "picocri" else []
    return [exe] + pre + ["--root", root, "run", "--bundle", bundle, cid]


def _oci_delete(rt, binary, root, cid):
    exe = binary if rt == "picocri" else shutil.which(rt)
    pre = ["oci"] if rt == "picocri" else []
    subprocess.run([exe] + pre + ["--root", root, "delete", "--force", cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False)


def _unmount_controllerless_cgroup2():
    """In the child's private mount namespace: unmounts cgroup2 mounts below
    /sys/fs/cgroup (the hybrid layout's unified mount), keeping v1 only."""
    with open("/proc/self/mountinfo") as f:
        mps = [ln.split(" - ")[0].split()[4] for ln in f
               if ln.split(" - ")[1].startswith("cgroup2 ")]
    mps = [mp for mp in mps if mp.startswith("/sys/fs/cgroup/")]
    for mp in mps:
        subprocess.run(["umount", mp], check=True, timeout=30)
    return mps


def oci_child(argv):
    """Runs inside `unshare -m --propagation private`; prints JSON
    {"runtimes": [...], "ms": {rt: [...]}, "unmounted": [...]}."""
    binary, workdir, runs = argv[0], argv[1], int(argv[2])
    unmounted = _unmount_controllerless_cgroup2()
    bundle = os.path.join(workdir, "bundle")
    rts = [r for r in OCI_RUNTIMES if r == "picocri" or shutil.which(r)]
    roots = {r: os.path.join(workdir, "root-" + r) for r in rts}
    ms = {r: [] for r in rts}
    for i in range(-2, runs):  # two warm-up rounds, not counted
        order = rts[i % len(rts):] + rts[:i % len(rts)]
        for rt in order:
            cid = "pcb-%s-%d-%d" % (rt, os.getpid(), i + 2)
            t0 = time.perf_counter_ns()
            p = subprocess.run(_oci_argv(rt, binary, roots[rt], bundle, cid),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
            dt = time.perf_counter_ns() - t0
            if p.returncode != 0:
                _oci_delete(rt, binary, roots[rt], cid)
                raise SystemExit("%s run failed (exit %d): %s"
                                 % (rt, p.returncode, p.stderr.decode(errors="replace")[-2000:]))
            if i >= 0:
                ms[rt].append(dt / 1e6)
    json.dump({"runtimes": rts, "ms": ms, "unmounted": unmounted}, sys.stdout)
    return 0


def workload_oci(runtimes, opts):
    h = _harness()
    workdir = cri_harness.mkworkdir("pcbench-oci-")
    try:
        make_bundle(os.path.join(workdir, "bundle"), ["/bin/true"])
        p = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "--", sys.executable,
             os.path.abspath(__file__), "oci-child", opts.picocri, workdir, str(opts.oci_runs)],
            stdin=subprocess.DEVNULL, capture_output=True,
            preexec_fn=cri_harness.die_with_parent,
            timeout=RUN_TIMEOUT * 3 * (opts.oci_runs + 2))
        if p.returncode != 0:
            raise RuntimeError("oci benchmark failed: %s" % p.stderr.decode(errors="replace"))
        out = json.loads(p.stdout)
    finally:
        h.umount_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    results = {}
    for rt in out["runtimes"]:
        v = sorted(out["ms"][rt])
        results[rt] = [h.Metric("run `true` (create+start+wait+delete): median",
                                statistics.median(v), "ms"),
                       h.Metric("run `true` (create+start+wait+delete): p90",
                                h.percentile(v, 90), "ms"),
                       h.Metric("run `true` (create+start+wait+delete): mean",
                                statistics.fmean(v), "ms")]
    missing = [r for r in OCI_RUNTIMES if r not in out["runtimes"]]
    note = ("%d runs each, interleaved, in a private mount namespace (unmounted there: %s);"
            " wall time per container from spawn to exit" %
            (opts.oci_runs, ", ".join(out["unmounted"]) or "nothing"))
    if missing:
        note += "; not installed: " + ", ".join(missing)
    return h.Table("picocri oci vs crun %s vs runc %s" % (_version("crun"), _version("runc")),
                   out["runtimes"], results, note)


def _version(tool):
    exe = shutil.which(tool)
    if not exe:
        return "(missing)"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, timeout=10).stdout
        return out.decode().split("\n")[0].split()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


# ---- monitor: picocri monitor vs containerd-shim-runc-v2 -------------------------------
def _frame(t, payload=b""):
    return t.encode() + struct.pack(">I", len(payload)) + payload


def _mon_request(sock_path, t, payload=b"", timeout=10.0):
    """One request to a monitor's control socket; returns (type, payload)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(_frame(t, payload))
        buf = b""
        while len(buf) < 5 or len(buf) < 5 + struct.unpack(">I", buf[1:5])[0]:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("monitor closed the connection")
            buf += data
        return chr(buf[0]), buf[5:5 + struct.unpack(">I", buf[1:5])[0]]
    finally:
        s.close()


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Monitors:
    """Monitors started the way the daemon starts them (`picocri monitor`
    detaches and prints "ok <monitor-pid> <container-pid>")."""

    def __init__(self, binary):
        self.dir = cri_harness.mkworkdir("pcbench-mon-")
        self.binary = binary
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        self.mons = []  # (id, monitor pid, container pid, socket, exit file)

    def start(self, n):
        i = len(self.mons)
        d = os.path.join(self.dir, "c%d" % i)
        bundle = os.path.join(d, "bundle")
        make_bundle(bundle, ["/bin/sleep", "2147483647"])
        cid = "pcbench-mon-%d-%d" % (os.getpid(), i)
        sock, exit_file = os.path.join(d, "mon.sock"), os.path.join(d, "exit.json")
        # The environment rt_monitor_spawn() gives the monitor.
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
        p = subprocess.run([self.binary, "monitor", "--id", cid, "--bundle", bundle,
                            "--state-root", self.state, "--exit-file", exit_file,
                            "--log-path", os.path.join(d, "0.log"), "--socket", sock],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT,
                           env=env)
        out = p.stdout.decode()
        if p.returncode != 0 or not out.startswith("ok "):
            raise RuntimeError("picocri monitor: %s %s" % (out, p.stderr.decode()))
        _, mpid, cpid = out.split()
        self.mons.append((cid, int(mpid), int(cpid), sock, exit_file))
        t, msg = _mon_request(sock, "S")
        if t != "Y":
            raise RuntimeError("monitor start: %s" % msg.decode(errors="replace"))
        return int(mpid)

    def cleanup(self):
        for cid, mpid, cpid, sock, exit_file in self.mons:
            try:
                _mon_request(sock, "K", b"9", timeout=5)
            except (OSError, RuntimeError):
                if _pid_alive(cpid):
                    os.kill(cpid, signal.SIGKILL)
            if not _wait(lambda: not _pid_alive(mpid), 10) and _pid_alive(mpid):
                os.kill(mpid, signal.SIGKILL)
            subprocess.run([self.binary, "oci", "--root", self.state, "delete", "--force", cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=RUN_TIMEOUT, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def _mem_kib(pid):
    """(PSS, RSS, USS) of one process in KiB; USS = its private pages."""
    v = _harness().smaps_rollup(pid)
    return (v.get("Pss", 0), v.get("Rss", 0),
            v.get("Private_Clean", 0) + v.get("Private_Dirty", 0))


def _memory_rows(h, start_one, n, settle):
    """Starts one, measures; starts n-1 more, measures each: returns Metrics."""
    first = start_one()
    time.sleep(settle)
    pss1, rss1, uss1 = _mem_kib(first)
    pids = [first] + [start_one() for _ in range(n - 1)]
    time.sleep(settle)
    pss_n = [_mem_kib(p)[0] for p in pids]
    return [h.Metric("PSS, 1 sleeping container", pss1, "KiB"),
            h.Metric("USS (private pages), 1 sleeping container", uss1, "KiB"),
            h.Metric("RSS, 1 sleeping container", rss1, "KiB"),
            h.Metric("PSS each, %d running (mean)" % n, statistics.fmean(pss_n), "KiB")]


def _image_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm"}.get(m, m)


def build_pause_archive(workdir):
    """An oci-archive of PAUSE_IMAGE (busybox sleep 2147483647), for ctr."""
    layout = lib_images.Layout(os.path.join(workdir, "layout"))
    layout.new("pause", arch=_image_arch())
    layout.add_layer("pause", lambda r: lib_images.busybox_root(r, ["sleep"]))
    layout.config("pause", "--config.entrypoint", "/bin/sleep", "--config.cmd", "2147483647")
    archive = os.path.join(workdir, "pause.tar")
    lib_images.run("skopeo", "copy", "--quiet", "oci:" + layout.ref("pause"),
                   "oci-archive:%s:%s" % (archive, PAUSE_IMAGE))
    return archive


def _shim_pids(ctd_sock):
    """containerd-shim-runc-v2 processes serving the containerd at ctd_sock."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == b"containerd-shim-runc-v2" and \
                ctd_sock.encode() in args:
            out.append(int(d))
    return out


class Sandboxes:
    """Pod sandboxes (host network, sleeping pause container) in containerd."""

    def __init__(self, rt):
        self.rt = rt
        self.ch = cri_harness.unix_channel(rt.sock)
        self.cri = cri_harness.Cri(self.ch, rt.pb, 60)
        self.ids = []

    def import_image(self, archive):
        lib_images.run("ctr", "--address", self.rt.sock, "-n", "k8s.io", "images", "import",
                       archive)

    def start(self, n):
        pb = self.rt.pb
        i = len(self.ids)
        before = set(_shim_pids(self.rt.sock))
        cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="bench-%d" % i, uid="bench-uid-%d" % i,
                                           namespace="bench", attempt=0),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE))))
        resp = self.cri.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=120)
        self.ids.append(resp.pod_sandbox_id)
        new = []
        _wait(lambda: new.extend(set(_shim_pids(self.rt.sock)) - before) or new, 10)
        if len(new) != 1:
            raise RuntimeError("expected one new containerd-shim-runc-v2, found %s" % new)
        return new[0]

    def cleanup(self):
        pb = self.rt.pb
        for sid in self.ids:
            for call, req in (("StopPodSandbox", pb.StopPodSandboxRequest),
                              ("RemovePodSandbox", pb.RemovePodSandboxRequest)):
                try:
                    getattr(self.cri, call)(req(pod_sandbox_id=sid), timeout=60)
                except Exception as e:  # noqa: BLE001 (report and go on cleaning)
                    print("bench: %s %s: %s" % (call, sid, e), file=sys.stderr)
        # Shims exit once their sandbox is removed; containerd's cleanup
        # (SIGKILL of the daemon) would leave a stuck one behind.
        _wait(lambda: not _shim_pids(self.rt.sock), 20)
        for pid in _shim_pids(self.rt.sock):
            os.kill(pid, signal.SIGKILL)
        self.ch.close()


def workload_monitor(runtimes, opts):
    h = _harness()
    results, names = {}, []
    mons = Monitors(opts.picocri)
    try:
        results["picocri monitor"] = _memory_rows(h, lambda: mons.start(0), opts.monitors,
                                                  opts.settle)
        names.append("picocri monitor")
    finally:
        mons.cleanup()
    ctd = runtimes.get("containerd")
    note = ("the process's own memory, not its container's; %s"
            % ("the picocri daemon (same binary) is running, as on a node"
               if "picocri" in runtimes else "no picocri daemon running"))
    if ctd is None:
        note += "; containerd not selected (--runtimes): no shim figures"
    else:
        tmp = cri_harness.mkworkdir("pcbench-img-")
        boxes = Sandboxes(ctd)
        try:
            boxes.import_image(build_pause_archive(tmp))
            results["containerd-shim-runc-v2"] = _memory_rows(
                h, lambda: boxes.start(0), opts.monitors, opts.settle)
            names.append("containerd-shim-runc-v2")
        finally:
            boxes.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
        note += ("; shim: one pod sandbox each (host network, sandbox image %s ="
                 " busybox sleep) started by containerd's CRI plugin" % PAUSE_IMAGE)
    return h.Table("per-container process memory: picocri monitor vs containerd-shim-runc-v2",
                   names, results, note)


workload_oci.standalone = True
workload_monitor.standalone = True


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "oci-child":
        sys.exit(oci_child(sys.argv[2:]))
    print("usage: run through harness.py (--workloads oci,monitor)", file=sys.stderr)
    sys.exit(2)
