"""Integration tests of `picocri monitor` (agent/runtime/rt_monitor*.c), as root.

What: each test builds a busybox-static OCI bundle in a temporary directory,
starts `picocri monitor` the way the daemon does (the command detaches and
prints "ok <monitor-pid> <container-pid>"), drives it over its control
socket with a small Python client of the framing protocol, and checks the CRI
log file and the exit file byte for byte.

Why: the monitor is what keeps containers, logs and exit statuses alive
across daemon restarts; these tests play the daemon (and kill it: closing
every connection) to show nothing is lost.

Invariant: every container and monitor a test starts is killed by PID and
its executor state deleted at teardown, even on failure; each monitor's
own stderr (--debug-log) must hold no sanitizer report.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PICOCRI_BIN", os.path.join(REPO, "build", "host-san", "picocri"))
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
LINE_MAX = 16384
TS_RE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)"),
    pytest.mark.skipif(not os.access(BIN, os.X_OK), reason="picocri binary missing"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static missing"),
]

# ---- bundle ------------------------------------------------------------------------------

APPLETS = ["sh", "echo", "cat", "sleep", "head", "tr", "printf", "seq", "test", "tty",
           "true", "false", "yes", "dd", "ls", "kill", "read", "stty"]


def make_rootfs(path):
    os.makedirs(os.path.join(path, "bin"))
    for d in ("proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(os.path.join(path, d))
    shutil.copy(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", a))


def make_config(args, tty=False, cgroup=None):
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
            "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    cfg = {
        "ociVersion": "1.2.0",
        "process": {
            "terminal": tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "montest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    if cgroup:
        cfg["linux"]["cgroupsPath"] = cgroup
    return cfg


# ---- control protocol client -------------------------------------------------------------


def frame(t, payload=b""):
    return t.encode() + struct.pack(">I", len(payload)) + payload


class Conn:
    """One control connection: frames in and out, with timeouts."""

    def __init__(self, path, timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, t, payload=b""):
        self.s.sendall(frame(t, payload))

    def recv(self, timeout=10.0):
        """Returns (type, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack(">I", self.buf[1:5])[0]
                if len(self.buf) >= 5 + n:
                    t, p = chr(self.buf[0]), self.buf[5:5 + n]
                    self.buf = self.buf[5 + n:]
                    return t, p
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from monitor")
            self.s.settimeout(left)
            data = self.s.recv(65536)
            if not data:
                return None
            self.buf += data

    def request(self, t, payload=b""):
        self.send(t, payload)
        r = self.recv()
        assert r is not None, "monitor closed the connection"
        return r

    def close(self):
        self.s.close()


def parse_status(text):
    return {k: v for k, v in (kv.split("=", 1) for kv in text.decode().split())}


# ---- monitor harness ---------------------------------------------------------------------


class Ctr:
    def __init__(self, h, name, args, tty=False, stdin=False):
        self.h, self.name = h, name
        self.id = "mon-%d-%s" % (os.getpid(), name)
        self.dir = os.path.join(h.root, name)
        self.bundle = os.path.join(self.dir, "bundle")
        os.makedirs(self.bundle)
        make_rootfs(os.path.join(self.bundle, "rootfs"))
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(make_config(args, tty=tty), f)
        self.log = os.path.join(self.dir, "0.log")
        self.exit_file = os.path.join(self.dir, "exit.json")
        self.sock = os.path.join(self.dir, "mon.sock")
        self.debug = os.path.join(self.dir, "monitor.err")
        self.tty, self.stdin = tty, stdin
        self.mpid = self.cpid = None

    def spawn(self):
        cmd = [BIN, "monitor", "--id", self.id, "--bundle", self.bundle,
               "--state-root", self.h.state, "--exit-file", self.exit_file,
               "--log-path", self.log, "--socket", self.sock, "--debug-log", self.debug]
        if self.tty:
            cmd.append("--tty")
        if self.stdin:
            cmd.append("--stdin")
        # The environment rt_monitor_spawn() gives the monitor.
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
        env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_"))})
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                           env=env)
        out = p.stdout.decode()
        assert p.returncode == 0 and out.startswith("ok "), (out, p.stderr.decode())
        _, mpid, cpid = out.split()
        self.mpid, self.cpid = int(mpid), int(cpid)
        self.h.pids.append(self)
        return self

    def conn(self):
        return Conn(self.sock)

    def req(self, t, payload=b""):
        c = self.conn()
        try:
            return c.request(t, payload)
        finally:
            c.close()

    def start(self):
        assert self.req("S") == ("Y", b"")
        return self

    def status(self):
        t, p = self.req("T")
        assert t == "Y", p
        return parse_status(p)

    def wait_exit(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.exit_file):
                with open(self.exit_file) as f:
                    return json.load(f)
            time.sleep(0.02)
        raise TimeoutError("no exit file for %s" % self.name)

    def wait_monitor_gone(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(self.mpid):
                return
            time.sleep(0.02)
        raise TimeoutError("monitor %d still running" % self.mpid)

    def records(self, path=None):
        with open(path or self.log, "rb") as f:
            return parse_log(f.read())


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def remove_cgroups(ctr_id):
    """Removes what the executor left of a container's cgroup (its name is the
    unique container id), in case `picocri oci delete` could not."""
    for top in ("/sys/fs/cgroup",):
        for dirpath, dirnames, _ in os.walk(top):
            if dirpath.count("/") > 6:
                dirnames[:] = []
                continue
            if ctr_id in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, ctr_id))
                except OSError:
                    pass
                dirnames.remove(ctr_id)


def parse_log(data):
    """CRI log records as (stream, tag, content); checks the exact format."""
    out = []
    assert data == b"" or data.endswith(b"\n")
    for line in data.split(b"\n")[:-1]:
        ts, stream, tag, content = line.split(b" ", 3) if line.count(b" ") >= 3 else \
            line.split(b" ", 2) + [b""]
        assert TS_RE.match(ts), line[:80]
        assert stream in (b"stdout", b"stderr"), line[:80]
        assert tag in (b"P", b"F"), line[:80]
        out.append((stream.decode(), tag.decode(), content))
    return out


class Harness:
    def __init__(self):
        # Short paths: unix socket names must fit in 108 bytes.
        self.root = tempfile.mkdtemp(prefix="/tmp/pm")
        self.state = os.path.join(self.root, "state")
        os.makedirs(self.state)
        self.pids = []

    def ctr(self, name, args, **kw):
        return Ctr(self, name, args, **kw)

    def cleanup(self):
        problems = []
        for c in self.pids:
            for pid in (c.cpid, c.mpid):
                if pid and pid_alive(pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for c in self.pids:
            try:
                c.wait_monitor_gone(10)
            except TimeoutError as e:
                problems.append(str(e))
            subprocess.run([BIN, "oci", "--root", self.state, "delete", "--force", c.id],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            remove_cgroups(c.id)
            if os.path.exists(c.debug):
                with open(c.debug, errors="replace") as f:
                    text = f.read()
                if "Sanitizer" in text or "runtime error" in text:
                    problems.append("%s: %s" % (c.name, text[:2000]))
        shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture
def mon():
    h = Harness()
    yield h
    problems = h.cleanup()
    assert not problems, problems


# ---- tests -------------------------------------------------------------------------------


def test_lines_reach_log_in_cri_format(mon):
    c = mon.ctr("lines", ["sh", "-c", "echo hello; echo 'world  two' >&2; echo; "
                          "printf 'no newline'"]).spawn()
    assert c.status()["state"] == "created"
    assert not os.path.exists(c.exit_file)
    c.start()
    ex = c.wait_exit()
    assert ex["exit_code"] == 0 and ex["signal"] == 0 and ex["oom_killed"] is False
    assert ex["pid"] == c.cpid
    assert 0 < ex["created_at"] <= ex["started_at"] <= ex["finished_at"]
    recs = c.records()
    assert sorted(recs) == sorted([("stdout", "F", b"hello"), ("stderr", "F", b"world  two"),
                                   ("stdout", "F", b""), ("stdout", "F", b"no newline")])
    # Within one stream the order is kept.
    assert [r for r in recs if r[0] == "stdout"] == [
        ("stdout", "F", b"hello"), ("stdout", "F", b""), ("stdout", "F", b"no newline")]
    c.wait_monitor_gone()
    assert not os.path.exists(c.sock)


def test_long_line_split_into_p_records(mon):
    n = 2 * LINE_MAX + 1000
    c = mon.ctr("long", ["sh", "-c", "printf '%%%ds' '' | tr ' ' a; echo; echo short"
                         % n]).spawn().start()
    assert c.wait_exit()["exit_code"] == 0
    recs = c.records()
    assert [(s, t, len(x)) for s, t, x in recs] == [
        ("stdout", "P", LINE_MAX), ("stdout", "P", LINE_MAX), ("stdout", "F", 1000),
        ("stdout", "F", 5)]
    assert b"".join(x for _, _, x in recs[:3]) == b"a" * n


def test_exit_code_and_signal_recorded(mon):
    a = mon.ctr("code", ["sh", "-c", "exit 7"]).spawn().start()
    b = mon.ctr("sig", ["sleep", "1000"]).spawn().start()
    ea = a.wait_exit()
    assert (ea["exit_code"], ea["signal"]) == (7, 0)
    assert b.status()["state"] == "running"
    assert b.req("K", b"9") == ("Y", b"")
    eb = b.wait_exit()
    assert (eb["exit_code"], eb["signal"]) == (137, 9)
    # Bad requests get an error, not a crash.
    c = mon.ctr("bad", ["sleep", "1000"]).spawn()
    t, p = c.req("K", b"0")
    assert t == "N" and p.split()[0] == b"22"
    t, p = c.req("W", b"24 80")
    assert t == "N"  # no terminal
    c.start()
    t, p = c.req("S")
    assert t == "N" and b"already started" in p
    assert c.req("K", b"9 all") == ("Y", b"")
    assert c.wait_exit()["signal"] == 9


def test_tty_container_gets_a_pty(mon):
    c = mon.ctr("tty", ["sh", "-c", "test -t 0 && test -t 1 && echo TTY; stty size; tty"],
                tty=True).spawn()
    assert c.req("W", b"33 111") == ("Y", b"")
    c.start()
    assert c.wait_exit()["exit_code"] == 0
    recs = c.records()
    assert all(s == "stdout" for s, _, _ in recs)
    text = b"".join(x + (b"\n" if t == "F" else b"") for _, t, x in recs)
    assert b"TTY\r\n" in text
    assert b"33 111\r\n" in text
    assert b"/dev/pts/" in text or b"/dev/console" in text


def test_attach_output_and_stdin(mon):
    c = mon.ctr("attach", ["sh", "-c", "read line; echo got:$line; cat; echo bye >&2"],
                stdin=True).spawn()
    a1 = c.conn()
    assert a1.request("A", b"stdin") == ("Y", b"")
    a2 = c.conn()
    assert a2.request("A") == ("Y", b"")
    c.start()
    a1.send("I", b"abc\n")
    a1.send("I", b"more\n")

    def collect(conn, until):
        got = {"O": b"", "E": b""}
        while True:
            r = conn.recv(timeout=10)
            assert r is not None, got
            t, p = r
            if t in got:
                got[t] += p
            if until(t, got):
                return got

    for conn in (a1, a2):
        got = collect(conn, lambda t, g: b"more\n" in g["O"])
        assert got["O"] == b"got:abc\nmore\n"
    # Detaching one client leaves the container running.
    a2.close()
    assert c.status()["state"] == "running"
    a1.send("C")
    got = collect(a1, lambda t, g: t == "X")
    assert got["E"] == b"bye\n"
    assert c.wait_exit()["exit_code"] == 0
    assert a1.recv(timeout=5) is None
    a1.close()
    recs = c.records()
    assert ("stdout", "F", b"got:abc") in recs and ("stdout", "F", b"more") in recs


def test_daemon_gone_reconnect_and_reopen(mon):
    script = "i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); sleep 0.01; done; exit 3"
    c = mon.ctr("reopen", ["sh", "-c", script]).spawn()
    # The monitor is not our child: it survives its starter.
    with open("/proc/%d/stat" % c.mpid) as f:
        ppid = int(f.read().split(")")[-1].split()[1])
    assert ppid != os.getpid()
    conn = c.conn()
    assert conn.request("S") == ("Y", b"")
    conn.close()  # the "daemon" dies without a word
    time.sleep(0.5)
    st = c.status()  # a new "daemon" reconnects
    assert st["state"] == "running" and int(st["pid"]) == c.cpid
    assert int(st["monitor_pid"]) == c.mpid
    # Kubelet-style rotation: rename, then ReopenContainerLog.
    rotated = c.log + ".20240102-030405"
    os.rename(c.log, rotated)
    assert c.req("R") == ("Y", b"")
    assert c.wait_exit()["exit_code"] == 3
    recs = c.records(rotated) + c.records()
    assert len(c.records()) > 0 and len(c.records(rotated)) > 0
    assert [x for _, _, x in recs] == [b"line %d" % i for i in range(400)]
    assert all(t == "F" for _, t, _ in recs)


def test_ten_containers_exits_while_disconnected(mon):
    cs = []
    for i in range(10):
        c = mon.ctr("c%d" % i, ["sh", "-c", "echo start %d; sleep 1; echo end %d; exit %d"
                                % (i, i, i)]).spawn().start()
        cs.append(c)
    killed = mon.ctr("k", ["sleep", "1000"]).spawn().start()
    # No connection is open from here on: the "daemon" is down.
    time.sleep(0.3)
    os.kill(killed.cpid, signal.SIGKILL)
    for i, c in enumerate(cs):
        ex = c.wait_exit()
        assert (ex["exit_code"], ex["signal"]) == (i, 0)
        assert c.records() == [("stdout", "F", b"start %d" % i), ("stdout", "F", b"end %d" % i)]
        c.wait_monitor_gone()
    ek = killed.wait_exit()
    assert (ek["exit_code"], ek["signal"]) == (137, 9)
    # Gone monitors: connect fails, and the exit file tells the story.
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        cs[0].conn()


def smaps_pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss in smaps_rollup")


def test_monitor_pss(mon):
    """Reports the monitor's PSS with a sleeping container, alone and as one
    of five (the binary's shared pages are then split between them)."""
    cs = [mon.ctr("pss%d" % i, ["sleep", "1000"]).spawn().start() for i in range(5)]
    time.sleep(0.5)
    with open("/proc/%d/maps" % cs[0].mpid) as f:
        sanitized = "libasan" in f.read()
    pss = [smaps_pss_kib(c.mpid) for c in cs]
    print("\nmonitor PSS with a sleeping container (KiB): %s, mean %d%s"
          % (pss, sum(pss) // len(pss), " (ASan build)" if sanitized else ""))
    assert all(p > 0 for p in pss)
    if not sanitized:
        assert sum(pss) // len(pss) < 1024, pss
    for c in cs:
        assert c.req("K", b"9") == ("Y", b"")
        assert c.wait_exit()["signal"] == 9


def test_oom_kill_recorded(mon):
    c = mon.ctr("oom", ["sh", "-c", "echo before; x=$(printf '%90000000s' ''); echo after"])
    with open(os.path.join(c.bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["linux"]["resources"] = {"memory": {"limit": 16 << 20, "swap": 16 << 20}}
    with open(os.path.join(c.bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    c.spawn().start()
    ex = c.wait_exit(timeout=60)
    assert ex["oom_killed"] is True, ex
    assert ex["signal"] == 9 and ex["exit_code"] == 137, ex
    assert c.records() == [("stdout", "F", b"before")]
