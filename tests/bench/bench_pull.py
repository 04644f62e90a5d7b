"""Pull + unpack benchmark: picocri vs containerd 1.6 (CRI PullImage).

What: builds two images at bench time from random data with umoci and
pushes them with skopeo to Debian's docker-registry on 127.0.0.1 (one
registry for both runtimes): "files", 5 layers of many small files
(--pull-mb in total, default 200 MB), and "bigfile", one layer holding one
file of --pull-mb.  Each runtime pulls both through CRI PullImage
(containerd: the registry configured as a plain-HTTP host in its hosts.toml
directory).  Per image it reports the wall time of PullImage, the peak RSS
of the daemon's process tree sampled every 10 ms during the pull
(VmRSS from /proc/PID/status), the CPU time the tree used (utime + stime,
with reaped children's, from /proc/PID/stat, before/after), and the bytes
the tree wrote to disk (/proc/PID/io write_bytes, before/after).  Each
pull's figures are also printed to stderr as they are taken.

The workload runs in rounds (harness --rounds, runtimes alternating, medians
reported); each round ends by removing both images (not timed), so the next
round pulls everything again.  Before each pull the page cache is flushed
(sync) and the runtime is left to settle until its process tree uses no
more CPU (bounded): removal is asynchronous in containerd (its garbage
collector deletes the snapshots later) and must not be billed to the next
pull, nor dirty pages of the previous one.

Why: the issue's benchmark ("faster than containerd, and a fraction of its
memory"), measured on the same machine in one run.

The images are built, and the registry stores them, on tmpfs (/dev/shm)
when it has room: building them creates and deletes hundreds of thousands
of files (umoci unpacks every earlier layer again for each new one), and on
the disk the runtimes unpack to, that would slow down whichever runtime
pulls first (ext4 skips recently deleted inodes when allocating new ones,
a linear scan per file created for a minute or more).  Both runtimes then
read the same registry from memory and write only their own files to disk.

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


def _scratch_dir(mb):
    """/dev/shm when it is a tmpfs with room for the layout and the registry
    (about 3x the image data, plus the largest unpacked bundle); else None
    (the default temporary directory)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if st.f_bavail * st.f_frsize > (8 * mb + 512) << 20 else None


def _setup(opts):
    if _ENV:
        return _ENV
    mb = getattr(opts, "pull_mb", 200)
    tmp = tempfile.mkdtemp(prefix="pcbench-pull-", dir=_scratch_dir(mb))
    atexit.register(shutil.rmtree, tmp, True)
    reg = lib_images.Registry(os.path.join(tmp, "registry"))
    atexit.register(reg.stop)
    lay = lib_images.Layout(os.path.join(tmp, "layout"))
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


def _cpu_s(pid):
    total = 0
    for p in _tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _settle(rt, limit=120.0):
    """sync, then wait until the runtime's tree used under 30 ms of CPU in a
    second (its asynchronous deletions are done), at most `limit` s."""
    os.sync()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        c0 = _cpu_s(rt.pid())
        time.sleep(1.0)
        if _cpu_s(rt.pid()) - c0 < 0.03:
            break
    os.sync()


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
        _settle(rt)
        wb0 = _write_bytes(rt.pid())
        cpu0 = _cpu_s(rt.pid())
        th.start()
        t0 = time.monotonic()
        cri.call("PullImage", rt.pb.PullImageRequest(image=rt.pb.ImageSpec(image=image)),
                 timeout=900)
        dt = time.monotonic() - t0
        cpu = _cpu_s(rt.pid()) - cpu0
        stop.set()
        th.join(5)
        # Let the daemon finish asynchronous writes it started for this pull.
        time.sleep(1.0)
        wb = _write_bytes(rt.pid()) - wb0
        print("bench: pull %s on %s: %.2f s, %.2f s CPU, peak RSS %d KiB"
              % (name, rt.name, dt, cpu, peak[0]), file=sys.stderr)
        out += [Metric("pull %s time" % name, dt, "s"),
                Metric("pull %s CPU time" % name, cpu, "s"),
                Metric("pull %s peak RSS" % name, peak[0], "KiB"),
                Metric("pull %s disk writes" % name, wb / (1 << 20), "MiB")]
    # Not timed: the next round (alternating runtimes) pulls from scratch.
    for image in env["images"].values():
        cri.call("RemoveImage", rt.pb.RemoveImageRequest(image=rt.pb.ImageSpec(image=image)),
                 timeout=300)
    return out


workload_pull.rounds = True
