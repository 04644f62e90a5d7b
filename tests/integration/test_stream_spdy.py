"""Streaming server (agent/stream) over SPDY/3.1, driven by a client that
is not ours: a Go program on Debian's moby/spdystream (the library kubelet,
crictl and client-go use), built at test time from spdyclient/.

What: remote command v4 (stdout, stderr, stdin, exit codes through the
Status JSON, tty with resize), port-forward to a server listening inside a
network namespace this test creates, and bad input (reused/unknown tokens,
unknown paths, protocol mismatch, garbage frames, a client that disconnects
mid-session, a 100 MiB stdin burst with the server's RSS bounded).

How: until the CRI runtime service issues URLs, the server runs under the
test-only harness `picocri stream-test` (host processes as the backend),
fed commands on stdin.  The helpers here are shared with
test_stream_ws.py.

Invariants: every process is started by the test and stopped by PID; the
network namespace is deleted afterwards; each wait is bounded.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib

import pytest

import cri_harness

HERE = os.path.dirname(os.path.abspath(__file__))
GO_SRC = os.path.join(HERE, "spdyclient", "main.go")


# ---- harness and client --------------------------------------------------------
def _bin_dir():
    path = os.environ.get("PICOCRI_BIN",
                          os.path.join(cri_harness.REPO, "build", "host-san", "picocri"))
    return path


def harness_cmd(tmpdir):
    """The command line of the stream-test harness: the picocri subcommand
    when the binary has it, else a tiny main linked against the library
    beside the binary (before the subcommand is registered in cri/)."""
    picocri = _bin_dir()
    if not os.access(picocri, os.X_OK):
        pytest.skip("picocri binary %s missing" % picocri)
    r = subprocess.run([picocri, "stream-test", "--help"], capture_output=True, timeout=20)
    if r.returncode == 0:
        return [picocri, "stream-test"]
    lib = os.path.join(os.path.dirname(picocri), "libpicocri.a")
    main_c = os.path.join(tmpdir, "main.c")
    with open(main_c, "w") as f:
        f.write("int strm_test_main(int argc, char **argv);\n"
                "int main(int argc, char **argv) { return strm_test_main(argc, argv); }\n")
    libs = subprocess.run(["pkg-config", "--libs", "libuv", "libnghttp2", "libcjson", "zlib",
                           "libzstd", "libseccomp", "yaml-0.1", "fuse3"],
                          capture_output=True, text=True, check=True).stdout.split()
    triplet = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    out = os.path.join(tmpdir, "stream-test")
    san = ["-fsanitize=address,undefined"] if picocri.rstrip("/").split("/")[-2].endswith("-san") else []
    subprocess.run(["cc"] + san + ["-o", out, main_c, lib] + libs +
                   ["-lmbedtls", "-lmbedx509", "-lmbedcrypto",
                    "/usr/lib/%s/libprotobuf-nanopb.a" % triplet, "-lpthread", "-lm"],
                   check=True, timeout=120)
    return [out]


def build_spdyclient(tmpdir):
    if shutil.which("go") is None or not os.path.isdir(
            "/usr/share/gocode/src/github.com/moby/spdystream"):
        pytest.skip("golang-go / golang-github-docker-spdystream-dev not installed")
    out = os.path.join(tmpdir, "spdyclient")
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off",
               GOCACHE=os.path.join(tmpdir, "gocache"), HOME=tmpdir)
    subprocess.run(["go", "build", "-o", out, GO_SRC], env=env, check=True, timeout=300,
                   cwd=tmpdir)
    return out


class Harness:
    def __init__(self, cmd):
        self.errpath = tempfile.mktemp(prefix="strm-harness-", suffix=".log")
        self.err = open(self.errpath, "w+")
        # A small ASan quarantine, so RSS reflects live memory in the
        # sanitizer build too (the stdin-burst test measures it).
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"),
                                                     "quarantine_size_mb=4"]))
        self.proc = subprocess.Popen(cmd + ["--log-level", "debug"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=env)
        line = self.proc.stdout.readline()
        assert line.startswith("port "), line
        self.port = int(line.split()[1])

    def issue(self, *fields):
        self.proc.stdin.write("\t".join(fields) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().split(" ", 1)
        assert line[0] == "url", line
        return line[1].strip()

    def exec_url(self, argv, tty=False, stdin=False, stdout=True, stderr=True, kind="exec"):
        flags = ["1" if x else "0" for x in (tty, stdin, stdout, stderr)]
        return self.issue(kind, *flags, *argv)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Closes stdin (the harness stops), returns the exit code and log."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            rc = self.proc.wait(timeout=10)
        self.err.seek(0)
        log = self.err.read()
        self.err.close()
        os.unlink(self.errpath)
        return rc, log


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("strm"))
    return {"harness": harness_cmd(d), "spdyclient": build_spdyclient(d)}


@pytest.fixture
def harness(tools):
    h = Harness(tools["harness"])
    yield h
    rc, log = h.stop()
    assert rc == 0, log
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in log, log


def spdy(tools, args, inp=None, timeout=60):
    return subprocess.run([tools["spdyclient"]] + args, input=inp, capture_output=True,
                          timeout=timeout)


# ---- network namespace with a server in it ------------------------------------------
class NetnsServer:
    """A network namespace (ip netns add) with lo up and an echo server on
    127.0.0.1:port inside it (a python child started with ip netns exec)."""

    CODE = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
print("ready", flush=True)
def one(c):
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        if d.startswith(b"SINK"):
            continue
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=one, args=(c,), daemon=True).start()
"""

    def __init__(self, port=8080):
        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.skip("needs root and iproute2")
        self.name = "pcstrm%d" % os.getpid()
        self.port = port
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = "/run/netns/" + self.name
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.name, "/usr/bin/python3",
                                      "-c", self.CODE, str(port)], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


@pytest.fixture
def netns_server():
    s = NetnsServer()
    yield s
    s.close()


class PfListen:
    """spdyclient pf-listen: a local port forwarded over one SPDY connection."""

    def __init__(self, tools, url, port):
        self.proc = subprocess.Popen([tools["spdyclient"], "pf-listen", url, str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening"), (line, self.proc.stderr.read())
        self.port = int(line.split()[1])

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return s

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.proc.stderr.read().decode()


def recv_all(s, limit=1 << 30):
    out = b""
    while len(out) < limit:
        d = s.recv(1 << 16)
        if not d:
            break
        out += d
    return out


# ---- remote command -----------------------------------------------------------------
def test_exec_stdout_stderr_exit_code(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "echo out; echo err >&2; exit 7"])
    r = spdy(tools, ["exec", url])
    assert r.returncode == 7, r
    assert r.stdout == b"out\n"
    assert b"err\n" in r.stderr
    assert b'"reason":"NonZeroExitCode"' in r.stderr
    assert b'"causes":[{"reason":"ExitCode","message":"7"}]' in r.stderr


def test_exec_success_status(tools, harness):
    r = spdy(tools, ["exec", harness.exec_url(["/bin/true"])])
    assert r.returncode == 0, r
    assert b'status: {"metadata":{},"status":"Success"}' in r.stderr


def test_exec_stdin_half_close(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "wc -c; exit 0"], stdin=True)
    r = spdy(tools, ["exec", "-stdin", url], inp=b"x" * 100000)
    assert r.returncode == 0, r
    assert r.stdout.strip() == b"100000"


def test_exec_tty_resize(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "sleep 0.5; stty size"], tty=True, stdin=True,
                           stderr=False)
    r = spdy(tools, ["exec", "-tty", "-stdin", "-resize", "123x45", url], inp=b"")
    assert r.returncode == 0, r
    assert r.stdout.strip() == b"45 123"


def test_exec_v2_plain_text_status(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "exit 2"])
    r = spdy(tools, ["exec", "-proto", "v2.channel.k8s.io", url])
    assert r.returncode == 1
    assert b"status: command terminated with non-zero exit code" in r.stderr


def test_attach_path(tools, harness):
    url = harness.exec_url(["/bin/echo", "attached"], kind="attach")
    assert "/attach/" in url
    r = spdy(tools, ["exec", url])
    assert r.returncode == 0 and r.stdout == b"attached\n", r


def test_many_concurrent_sessions(tools, harness):
    urls = [harness.exec_url(["/bin/sh", "-c", "echo %d; exit %d" % (i, i % 5)])
            for i in range(24)]
    procs = [subprocess.Popen([tools["spdyclient"], "exec", u], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for u in urls]
    for i, p in enumerate(procs):
        out, _ = p.communicate(timeout=60)
        assert p.returncode == i % 5 and out == b"%d\n" % i


# ---- bad input ------------------------------------------------------------------------
def http_request(port, head, read_timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall(head)
    data = recv_all(s, 1 << 16)
    s.close()
    return data


def test_reused_unknown_token_and_path(tools, harness):
    url = harness.exec_url(["/bin/true"])
    assert spdy(tools, ["exec", url]).returncode == 0
    r = spdy(tools, ["exec", url])
    assert r.returncode == 3 and b"404" in r.stderr
    r = spdy(tools, ["exec", url.rsplit("/", 1)[0] + "/AAAA"])
    assert r.returncode == 3 and b"404" in r.stderr
    data = http_request(harness.port, b"GET /nothing/here HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404")
    # A token is bound to its kind; a wrong path does not burn it.
    url = harness.exec_url(["/bin/true"])
    r = spdy(tools, ["exec", url.replace("/exec/", "/portforward/")])
    assert r.returncode == 3 and b"404" in r.stderr
    assert spdy(tools, ["exec", url]).returncode == 0


def test_not_upgrade_and_no_protocol(tools, harness):
    url = harness.exec_url(["/bin/true"])
    path = url.split(str(harness.port), 1)[1]
    data = http_request(harness.port, b"POST %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    assert data.startswith(b"HTTP/1.1 400")
    url = harness.exec_url(["/bin/true"])
    path = url.split(str(harness.port), 1)[1]
    data = http_request(harness.port, b"POST %s HTTP/1.1\r\nConnection: Upgrade\r\n"
                        b"Upgrade: SPDY/3.1\r\n\r\n" % path.encode())
    assert data.startswith(b"HTTP/1.1 403") and b"v4.channel.k8s.io" in data
    data = http_request(harness.port, b"\x16\x03\x01garbage\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400")


def upgrade_raw(port, path, proto=b"v4.channel.k8s.io"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST %s HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
              b"X-Stream-Protocol-Version: %s\r\n\r\n" % (path.encode(), proto))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_garbage_spdy_frames(tools, harness):
    for garbage in (b"\xff" * 64, b"\x80\x03\x00\x01\x00\xff\xff\xff" + b"\x00" * 32,
                    b"\x80\x03\x00\x01\x00\x00\x00\x0a" + b"\x00" * 10,
                    struct.pack(">HHI", 0x8003, 1, 10 + 20) + struct.pack(">IIH", 1, 0, 0) +
                    b"\x78\x9c" + os.urandom(18)):
        url = harness.exec_url(["/bin/sleep", "2"])
        s = upgrade_raw(harness.port, url.split(str(harness.port), 1)[1])
        s.sendall(garbage)
        s.settimeout(10)
        try:
            recv_all(s)  # the server closes the connection
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
    assert harness.alive()
    assert spdy(tools, ["exec", harness.exec_url(["/bin/true"])]).returncode == 0


def test_client_disconnects_mid_session(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "while :; do echo tick; sleep 0.05; done"])
    p = subprocess.Popen([tools["spdyclient"], "exec", url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"tick\n"
    p.kill()
    p.wait(timeout=10)
    # The loop's echo gets EPIPE and the shell exits: the session's resources
    # are released (no connection left in the server).
    deadline = time.time() + 15
    while time.time() < deadline:
        out = subprocess.run(["ss", "-tn", "state", "established", "( sport = :%d )" %
                              harness.port], capture_output=True, text=True).stdout
        if str(harness.port) not in out:
            break
        time.sleep(0.2)
    assert str(harness.port) not in out
    assert spdy(tools, ["exec", harness.exec_url(["/bin/true"])]).returncode == 0


def test_process_exits_mid_session_with_open_stdin(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "read x; echo got $x; exit 5"], stdin=True)
    p = subprocess.Popen([tools["spdyclient"], "exec", "-stdin", url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"line\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=30)  # stdin stays open until the process exits
    assert p.returncode == 5 and out == b"got line\n", err


def test_stdin_burst_100mib_bounded_rss(tools, harness):
    url = harness.exec_url(["/bin/sh", "-c", "sleep 1; wc -c"], stdin=True)
    before = harness.rss_kib()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], harness.rss_kib())
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    p = subprocess.Popen([tools["spdyclient"], "exec", "-stdin", url], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunk = b"z" * (1 << 20)
    try:
        for _ in range(100):
            p.stdin.write(chunk)
        p.stdin.close()
    except BrokenPipeError:
        # Say who gave up: the client (its stderr) or the server (its log).
        p.kill()
        harness.err.seek(0)
        raise AssertionError("client closed its stdin early: client=%r harness alive=%s log=%s"
                             % (p.stderr.read()[-2000:], harness.alive(),
                                harness.err.read()[-3000:])) from None
    out = p.stdout.read()
    p.wait(timeout=120)
    stop.set()
    t.join()
    assert out.strip() == b"%d" % (100 << 20)
    # Bounded: far below the burst (the sanitizer build has a larger base).
    assert peak[0] - before < 32 * 1024, (before, peak[0])


# ---- port forward ------------------------------------------------------------------------
def test_portforward_in_netns(tools, harness, netns_server):
    url = harness.issue("portforward", netns_server.path)
    pf = PfListen(tools, url, netns_server.port)
    try:
        socks = [pf.connect() for _ in range(4)]
        for i, s in enumerate(socks):
            s.sendall(b"hello %d" % i)
        for i, s in enumerate(socks):
            assert s.recv(100) == b"hello %d" % i
        payload = os.urandom(8 << 20)
        s = socks[0]
        threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                         daemon=True).start()
        got = recv_all(s)
        assert zlib.crc32(got) == zlib.crc32(payload) and len(got) == len(payload)
        for s in socks:
            s.close()
        # A port nothing listens on: the error comes back on the error stream.
        s = pf.connect()
        s.close()
    finally:
        pf.close()
    # The harness is still in its own namespace: a host port is not the pod's.
    url = harness.issue("portforward", netns_server.path)
    pf = PfListen(tools, url, 9)
    try:
        s = pf.connect()
        assert recv_all(s) == b""
        s.close()
        time.sleep(0.5)
    finally:
        err = pf.close()
    assert "error forwarding port 9" in err and "refused" in err.lower(), err
