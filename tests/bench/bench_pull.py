"""Pull + unpack benchmark: picocri vs containerd 1.6 (CRI PullImage).

What: builds two images at bench time from random data with umoci and
pushes them with skopeo to Debian's docker-registry on 127.0.0.1 (one
registry for both runtimes): "files", 5 layers of many small files
(--pull-mb in total, default 200 MB), and "bigfile", one layer holding one
file of --pull-mb.  Each runtime pulls both through CRI PullImage
(containerd: the registry configured as a plain-HTTP host in its hosts.toml
directory).  Per image it reports the wall time of PullImage, the peak RSS
of the daemon's process tree sampled every 10 ms during the pull
(VmRSS from /proc/PID/status), and the bytes the tree wrote to disk
(/proc/PID/io write_bytes, before/after).

Why: the issue's benchmark ("faster than containerd, and a fraction of its
memory"), measured on the same machine in one run.

Invariants: servers listen on 127.0.0.1 only; the registry and image
directories are removed at exit.
"""
import atexit
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import lib_images  # noqa: E402

_ENV = {}


class Metric:
    """Same shape as harness.Metric (the harness reads attributes only)."""

    def __init__(self, name, value, unit, better="lower"):
        self.name, self.value, self.unit, self.better = name, value, unit, better


def _files_layer(root, mb, seed):
    d = os.path.join(root, "data%d" % seed)
    os.makedirs(d, exist_ok=True)
    left, i = mb << 20, 0
    while left > 0:
        n = min(left, 1024 + (i * 7919) % 16384)  # 1-17 KiB files
        sub = os.path.join(d, "%03d" % (i // 500))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%06d" % i), "wb") as f:
            f.write(os.urandom(n))
        left -= n
        i += 1


def _big_layer(root, mb):
    with open(os.path.join(root, "big.bin"), "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))


def _setup(opts):
    if _ENV:
        return _ENV
    tmp = tempfile.mkdtemp(prefix="pcbench-pull-")
    atexit.register(shutil.rmtree, tmp, True)
    reg = lib_images.Registry(os.path.join(tmp, "registry"))
    atexit.register(reg.stop)
    lay = lib_images.Layout(os.path.join(tmp, "layout"))
    mb = getattr(opts, "pull_mb", 200)
    t0 = time.monotonic()
    lay.new("files")
    for k in range(5):
        lay.add_layer("files", lambda root, k=k: _files_layer(root, mb // 5, k))
    lay.new("bigfile")
    lay.add_layer("bigfile", lambda root: _big_layer(root, mb))
    images = {name: reg.push(lay, name, "bench/" + name) for name in ("files", "bigfile")}
    print("bench: pull images built and pushed in %.1fs" % (time.monotonic() - t0),
          file=sys.stderr)
    _ENV.update(tmp=tmp, reg=reg, images=images)
    return _ENV


def _tree(pid):
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(kids.get(q, []))
    return out


def _rss_kib(pid):
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _write_bytes(pid):
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/io" % p) as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _containerd_hosts(rt, host):
    d = os.path.join(rt.workdir, "registry", host)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write('server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n'
                % (host, host))


def workload_pull(rt, cri, opts):
    env = _setup(opts)
    if rt.name == "containerd":
        _containerd_hosts(rt, env["reg"].host)
    out = []
    for name, image in env["images"].items():
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_kib(rt.pid()))
                time.sleep(0.01)
        th = threading.Thread(target=sample, daemon=True)
        wb0 = _write_bytes(rt.pid())
        th.start()
        t0 = time.monotonic()
        cri.call("PullImage", rt.pb.PullImageRequest(image=rt.pb.ImageSpec(image=image)),
                 timeout=900)
        dt = time.monotonic() - t0
        stop.set()
        th.join(5)
        # Let the daemon finish asynchronous writes it started for this pull.
        time.sleep(1.0)
        wb = _write_bytes(rt.pid()) - wb0
        out += [Metric("pull %s time" % name, dt, "s"),
                Metric("pull %s peak RSS" % name, peak[0], "KiB"),
                Metric("pull %s disk writes" % name, wb / (1 << 20), "MiB")]
    return out
