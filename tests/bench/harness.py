#!/usr/bin/python3
"""Benchmarks picocri against containerd's CRI plugin on the same machine.

What: starts each runtime on its own socket with its root and state under a
temporary directory (containerd from Debian with a generated config.toml;
picocri from $PICOCRI_BIN), runs every selected workload against each with the
same client (python3-grpcio through tests/integration/cri_harness.py), and
prints one table: metric, picocri, containerd, ratio picocri/containerd.

Why: DESIGN.md principle 6, measured not assumed.  A later benchmark is one
function `workload_<name>(rt, cri, opts) -> [Metric]` added to WORKLOADS; the
start/stop/memory/table parts stay as they are.

Invariants: only processes this script started are signalled, by PID; every
wait is bounded; temporary directories (and any mount left under them) are
removed at exit, also on failure.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import cri_harness  # noqa: E402


class Metric:
    def __init__(self, name, value, unit, better="lower"):
        self.name, self.value, self.unit, self.better = name, value, unit, better


class Table:
    """What a standalone workload returns: its own columns (e.g. picocri,
    crun, runc), {column: [Metric]}, printed as a separate table."""

    def __init__(self, title, names, results, note=""):
        self.title, self.names, self.results, self.note = title, names, results, note


# ---- process measurements ----------------------------------------------------
def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(pid):
    """pid and all its descendants."""
    kids = children_map()
    out, todo = [], [pid]
    while todo and len(out) < 10000:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def smaps_rollup(pid):
    vals = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                vals[parts[0].rstrip(":")] = int(parts[1])
    return vals


def memory_kib(pid):
    """(RSS, PSS) in KiB summed over pid's process tree."""
    rss = pss = 0
    for p in process_tree(pid):
        try:
            v = smaps_rollup(p)
        except OSError:
            continue
        rss += v.get("Rss", 0)
        pss += v.get("Pss", 0)
    return rss, pss


def cpu_seconds(pid):
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in process_tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def umount_under(path):
    """Lazily unmounts anything left mounted below path (deepest first)."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                mounts.append(mp)
    for mp in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], check=False, timeout=30)


# ---- runtimes ----------------------------------------------------------------
class Runtime:
    name = "?"

    def __init__(self, pb):
        self.pb = pb
        self.workdir = cri_harness.mkworkdir("pcbench-%s-" % self.name)
        self.proc = None
        self.sock = None
        self.binaries = []

    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=60.0):
        """Waits until the socket accepts (polled every 2 ms), then until it
        answers Version; returns seconds from spawn to accepting."""
        deadline = time.monotonic() + timeout
        accepted = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %d during start-up\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            if accepted is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock)
                    accepted = time.monotonic() - self.t_spawn
                except OSError:
                    time.sleep(0.002)
                    continue
                finally:
                    s.close()
            ch = cri_harness.unix_channel(self.sock)
            try:
                cri_harness.Cri(ch, self.pb).Version(timeout=2)
                return accepted
            except Exception:  # noqa: BLE001 (not ready yet)
                time.sleep(0.05)
            finally:
                ch.close()
        raise RuntimeError("%s did not answer Version within %.0fs\n%s"
                           % (self.name, timeout, self.log_tail()))

    def spawn(self, argv, env=None):
        log = open(os.path.join(self.workdir, "log"), "ab")
        self.t_spawn = time.monotonic()
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=env, close_fds=True,
                                         preexec_fn=cri_harness.die_with_parent)
        finally:
            log.close()

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.workdir, "log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout=20.0):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            print("bench: %s did not exit within %.0fs of SIGTERM; killed"
                  % (self.name, timeout), file=sys.stderr)
            return self.proc.returncode

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        umount_under(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Picocri(Runtime):
    name = "picocri"

    def __init__(self, pb, binary, extra_args=()):
        super().__init__(pb)
        self.binary = binary
        self.binaries = [binary]
        self.sock = os.path.join(self.workdir, "picocri.sock")
        self.extra_args = list(extra_args)

    def start(self):
        dirs = {k: os.path.join(self.workdir, k) for k in ("root", "state", "cni")}
        for d in dirs.values():
            os.makedirs(d)
        self.spawn([self.binary, "serve", "--socket", self.sock, "--root", dirs["root"],
                    "--state", dirs["state"], "--log-level", "info",
                    "--cni-conf-dir", dirs["cni"]] + self.extra_args)
        return self.wait_ready()


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  sandbox_image = "{pause}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry}"
"""


class Containerd(Runtime):
    name = "containerd"

    def __init__(self, pb, binary="containerd"):
        super().__init__(pb)
        self.binary = shutil.which(binary) or binary
        self.binaries = [self.binary] + [p for p in (
            shutil.which("containerd-shim-runc-v2"), shutil.which("runc")) if p]
        self.sock = os.path.join(self.workdir, "containerd.sock")

    def start(self):
        d = {k: os.path.join(self.workdir, k)
             for k in ("root", "state", "cni_bin", "cni_conf", "registry")}
        for p in d.values():
            os.makedirs(p)
        cfg = os.path.join(self.workdir, "config.toml")
        with open(cfg, "w") as f:
            f.write(CONTAINERD_CONFIG.format(sock=self.sock, pause=bench_oci.PAUSE_IMAGE, **d))
        self.spawn([self.binary, "--config", cfg])
        return self.wait_ready()


# ---- workloads ---------------------------------------------------------------
def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def workload_idle(rt, cri, opts):
    """Idle memory after start-up, and the binaries' size on disk."""
    time.sleep(opts.settle)
    rss, pss = memory_kib(rt.pid())
    size = sum(os.path.getsize(b) for b in rt.binaries)
    return [Metric("idle RSS", rss / 1024.0, "MiB"),
            Metric("idle PSS", pss / 1024.0, "MiB"),
            Metric("binaries on disk", size / 1048576.0, "MiB")]


def workload_version(rt, cri, opts):
    """Version RPC: sequential latency and throughput, then concurrent.

    Runs in rounds (opts.calls split over opts.rounds, runtimes alternating)."""
    n = max(1, opts.calls // opts.rounds)
    req = rt.pb.VersionRequest(version="0.1.0")
    call = cri.callable("Version")
    for _ in range(min(500, n)):
        call(req, timeout=10)
    cpu0 = cpu_seconds(rt.pid())
    lat = []
    t_start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call(req, timeout=10)
        lat.append(time.perf_counter_ns() - t0)
    seq_s = time.perf_counter() - t_start
    cpu_seq = cpu_seconds(rt.pid()) - cpu0
    lat.sort()

    window = opts.window
    t_start = time.perf_counter()
    inflight, done = [], 0
    issued = 0
    while done < n:
        while issued < n and len(inflight) < window:
            inflight.append(call.future(req, timeout=60))
            issued += 1
        inflight.pop(0).result()
        done += 1
    conc_s = time.perf_counter() - t_start
    rss, pss = memory_kib(rt.pid())
    return [
        Metric("Version p50 latency", percentile(lat, 50) / 1000.0, "us"),
        Metric("Version p99 latency", percentile(lat, 99) / 1000.0, "us"),
        Metric("Version mean latency", statistics.fmean(lat) / 1000.0, "us"),
        Metric("Version sequential", n / seq_s, "calls/s", "higher"),
        Metric("Version concurrent (%d in flight)" % window, n / conc_s, "calls/s", "higher"),
        Metric("daemon CPU per sequential call", cpu_seq / n * 1e6, "us"),
        Metric("RSS after Version load", rss / 1024.0, "MiB"),
        Metric("PSS after Version load", pss / 1024.0, "MiB"),
    ]


workload_version.rounds = True

# bench_oci's workloads use this module's helpers through `import harness`.
sys.modules.setdefault("harness", sys.modules[__name__])
import bench_oci  # noqa: E402
import bench_pods  # noqa: E402  (pods: start latency, memory, idle)
import bench_pull  # noqa: E402  (image pull + unpack)
import bench_stream  # noqa: E402  (exec / port-forward through the streaming servers)

# Order matters: idle memory is measured before any load.  A workload with
# `.rounds = True` runs opts.rounds times, alternating the runtimes, and each
# figure is the median over rounds: on a busy machine both see the same noise.
# A workload with `.standalone = True` does not talk CRI to each runtime: it
# runs once as fn(runtimes, opts) (runtimes: the started ones by name) and
# returns a Table with its own columns, printed after the main table.
WORKLOADS = {
    "idle": workload_idle,
    "version": workload_version,
    "oci": bench_oci.workload_oci,
    "monitor": bench_oci.workload_monitor,
    "pods": bench_pods.workload_pods,
    "pull": bench_pull.workload_pull,
    "stream": bench_stream.workload_stream,
}


def median_metrics(rounds):
    """[[Metric]] (one list per round, same order) -> [Metric] of medians."""
    out = []
    for i, m in enumerate(rounds[0]):
        vals = [r[i].value for r in rounds if i < len(r)]
        out.append(Metric(m.name, statistics.median(vals), m.unit, m.better))
    return out


# ---- table -------------------------------------------------------------------
def fmt(v):
    if v is None:
        return "-"
    if v >= 1000:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def print_table(names, results, out=sys.stdout):
    """results: {runtime: [Metric]} in the same metric order for each; with
    two or more names, one ratio column first/other per other name."""
    order = []
    for n in names:
        for m in results.get(n, []):
            if (m.name, m.unit) not in order:
                order.append((m.name, m.unit))
    by = {n: {(m.name, m.unit): m for m in results.get(n, [])} for n in names}
    head = ["metric", "unit"] + names
    head += ["ratio %s/%s" % (names[0], n) for n in names[1:]]
    rows = []
    for key in order:
        vals = [by[n].get(key) for n in names]
        row = [key[0], key[1]] + [fmt(v.value if v else None) for v in vals]
        a = vals[0] if vals else None
        for b in vals[1:]:
            row.append("%.3f" % (a.value / b.value) if a and b and b.value else "-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, head))
    print(line, file=out)
    print("-" * len(line), file=out)
    for r in rows:
        print("  ".join(("%-*s" if i < 2 else "%*s") % (w, c)
                        for i, (w, c) in enumerate(zip(widths, r))), file=out)


# ---- main --------------------------------------------------------------------
def make_runtime(name, pb, opts):
    if name == "picocri":
        return Picocri(pb, opts.picocri)
    if name == "containerd":
        return Containerd(pb, opts.containerd)
    raise SystemExit("unknown runtime %s" % name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--picocri", default=os.environ.get(
        "PICOCRI_BIN", os.path.join(REPO, "build", "host", "picocri")))
    ap.add_argument("--containerd", default="containerd")
    ap.add_argument("--runtimes", default="picocri,containerd")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds for workloads that alternate runtimes (median reported)")
    ap.add_argument("--window", type=int, default=64, help="calls in flight (concurrent)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before measuring")
    ap.add_argument("--oci-runs", type=int, default=100,
                    help="oci workload: runs of each runtime")
    ap.add_argument("--pull-mb", type=int, default=200,
                    help="pull workload: size of each generated image in MB")
    ap.add_argument("--monitors", type=int, default=5,
                    help="monitor workload: monitors (and shims) running at once")
    ap.add_argument("--json", help="also write the figures to this file")
    opts = ap.parse_args()

    names = [n for n in opts.runtimes.split(",") if n]
    workloads = opts.workloads.split(",")
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit("unknown workload %s (have: %s)" % (w, ", ".join(WORKLOADS)))
    protodir = cri_harness.mkworkdir("pcbench-proto-")
    runtimes = {}
    results = {n: [] for n in names}
    tables = []
    try:
        pb = cri_harness.load_proto(protodir)
        for n in names:
            rt = make_runtime(n, pb, opts)
            runtimes[n] = rt
            results[n].append(Metric("start-up to socket accepting", rt.start() * 1000, "ms"))
            print("bench: %s ready (pid %d)" % (n, rt.pid()), file=sys.stderr)
        for w in workloads:
            fn = WORKLOADS[w]
            if getattr(fn, "standalone", False):
                print("bench: %s" % w, file=sys.stderr)
                tables.append(fn(runtimes, opts))
                continue
            rounds = opts.rounds if getattr(fn, "rounds", False) else 1
            per = {n: [] for n in names}
            for r in range(rounds):
                for n in (names if r % 2 == 0 else names[::-1]):
                    rt = runtimes[n]
                    ch = cri_harness.unix_channel(rt.sock)
                    try:
                        print("bench: %s on %s (round %d/%d)" % (w, n, r + 1, rounds),
                              file=sys.stderr)
                        per[n].append(fn(rt, cri_harness.Cri(ch, pb, 30), opts))
                    finally:
                        ch.close()
            for n in names:
                results[n].extend(median_metrics(per[n]))
        for n in names:
            t0 = time.monotonic()
            rc = runtimes[n].stop()
            results[n].append(Metric("SIGTERM to exit", (time.monotonic() - t0) * 1000, "ms"))
            if rc not in (0, None):
                print("bench: %s exited %d on SIGTERM" % (n, rc), file=sys.stderr)
    finally:
        for rt in runtimes.values():
            rt.cleanup()
        shutil.rmtree(protodir, ignore_errors=True)

    if names:
        print()
        print("picocri vs containerd %s; same client (python3-grpcio); %d calls in %d rounds,"
              " medians; load average at end %.2f on %d CPUs"
              % (_containerd_version(opts), opts.calls, opts.rounds, os.getloadavg()[0],
                 os.cpu_count()))
        print("ratio = picocri/containerd: below 1 is better for time, memory and size;"
              " above 1 is better for calls/s")
        print_table(names, results)
    for t in tables:
        print()
        print(t.title)
        if t.note:
            print(t.note)
        print_table(t.names, t.results)
    if opts.json:
        out = {n: [vars(m) for m in results[n]] for n in names}
        out["tables"] = [{"title": t.title, "note": t.note,
                          "results": {n: [vars(m) for m in t.results[n]] for n in t.names}}
                         for t in tables]
        with open(opts.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def _containerd_version(opts):
    try:
        out = subprocess.run([shutil.which(opts.containerd) or opts.containerd, "--version"],
                             capture_output=True, timeout=10).stdout.decode().split()
        return out[2] if len(out) > 2 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
