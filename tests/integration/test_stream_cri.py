"""Streaming end to end: CRI Exec, Attach and PortForward on real containers.

What: a pod (CNI bridge network) with busybox containers (the image built
with umoci and imported offline with `picocri import`) in the test's own
network namespace (lib_pods.PodEnv); the daemon
runs in that namespace (nsenter --net), so its streaming server listens on
127.0.0.1 there.  The URLs the CRI calls return are driven by clients that
are not ours: the Go moby/spdystream client (spdyclient/, as kubelet and
crictl use it) and Debian's python3-websocket.  Covered: exec v4 over SPDY
(stdout, stderr, exit codes, stdin, tty with resize), exec over WebSocket
(v5 with stdin close, v4 tty), attach to a running container (output,
stdin, detach leaves it running), port-forward to a server in the pod over
SPDY and WebSocket, many concurrent sessions, a container that exits
mid-session, reused and expired tokens, unknown container and pod ids
(NOT_FOUND from the CRI call), a 100 MiB stdin burst with the daemon's RSS
bounded, and the --stream-address flag and config key.

How the clients reach the server: spdyclient runs under `nsenter --net`;
Python sockets are connected from a short-lived thread that setns()es into
the test's namespace (the socket stays in it).

Invariants: every process is started by the test and stopped by PID; the
namespace, pods, mounts and cgroups are removed by PodEnv's finalizer,
also on failure; every wait is bounded.
"""

import os
import random
import socket
import subprocess
import threading
import time
import zlib

import grpc
import pytest

from lib_pods import (RUNTIME, netns_connect, pod_images, podenv_factory, podenv,  # noqa: F401
                      container_config, pod_config, wait_for)
from test_stream_spdy import build_spdyclient, recv_all

websocket = pytest.importorskip("websocket")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(RUNTIME != "picocri", reason="picocri's streaming server"),
]

ECHO_PORT = 8080
IMAGE = "docker.io/library/busybox:stream"


def url_hostport(url):
    hp = url.split("://", 1)[1].split("/", 1)[0]
    host, port = hp.rsplit(":", 1)
    return host, int(port)


def ws_connect(env, url, proto, query=""):
    host, port = url_hostport(url)
    s = netns_connect(env.netns.name, host, port)
    return websocket.create_connection(url.replace("http://", "ws://") + query,
                                       subprotocols=[proto], timeout=30, socket=s)


def ws_collect(ws, limit=30):
    """Reads until the server closes; returns {channel: bytes}."""
    chans = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            op, data = ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if data:
            chans[data[0]] = chans.get(data[0], b"") + data[1:]
    return chans


class Stream:
    """One test's world: PodEnv, a pod, a long-running container, spdyclient."""

    def __init__(self, env, spdyclient):
        self.env = env
        self.pb = env.pb
        self.k = env.k
        self.spdyclient = spdyclient
        self.pod, self.pod_cfg = env.run_pod()
        self.cid = env.create_start(self.pod, self.pod_cfg, "main", ["sleep", "3600"])
        env.wait_state(self.cid, self.pb.CONTAINER_RUNNING)

    def ns(self):
        return ["nsenter", "--net=/run/netns/" + self.env.netns.name, "--"]

    def exec_url(self, cmd, cid=None, tty=False, stdin=False, stdout=True, stderr=True):
        return self.k.Exec(self.pb.ExecRequest(container_id=cid or self.cid, cmd=cmd, tty=tty,
                                               stdin=stdin, stdout=stdout,
                                               stderr=stderr)).url

    def attach_url(self, cid, stdin=False, stdout=True, stderr=True, tty=False):
        return self.k.Attach(self.pb.AttachRequest(container_id=cid, stdin=stdin, tty=tty,
                                                   stdout=stdout, stderr=stderr)).url

    def pf_url(self):
        return self.k.PortForward(self.pb.PortForwardRequest(pod_sandbox_id=self.pod)).url

    def spdy(self, args, inp=None, timeout=60):
        return subprocess.run(self.ns() + [self.spdyclient] + args, input=inp,
                              capture_output=True, timeout=timeout)

    def spdy_popen(self, args, **kw):
        return subprocess.Popen(self.ns() + [self.spdyclient] + args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def start_ctr(self, name, command, stdin=False, tty=False):
        cfg = container_config(self.env, self.pod_cfg, name, command)
        cfg.stdin = stdin
        cfg.tty = tty
        cid = self.env.create(self.pod, self.pod_cfg, cfg)
        self.k.StartContainer(self.pb.StartContainerRequest(container_id=cid))
        self.env.wait_state(cid, self.pb.CONTAINER_RUNNING)
        return cid

    def daemon_rss_kib(self):
        with open("/proc/%d/status" % self.env.daemon.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def stop_proc(p, timeout=10):
    """Ends a client the test started, by PID; returns its stderr."""
    if p.poll() is None:
        p.kill()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        return b""
    for f in (p.stdin, p.stdout):
        if f is not None and not f.closed:
            try:
                f.close()
            except OSError:
                pass
    return p.stderr.read() if p.stderr is not None and not p.stderr.closed else b""


@pytest.fixture(scope="module")
def spdyclient(tmp_path_factory):
    return build_spdyclient(str(tmp_path_factory.mktemp("spdycri")))


def start_env(podenv_factory, pod_images, picocri_bin, extra_args=()):  # noqa: F811
    """A PodEnv whose daemon has the busybox image imported (offline) and
    runs with extra_args."""
    env = podenv_factory(start=False)
    subprocess.run([picocri_bin, "import", "--root", env.daemon.root,
                    pod_images.layout.ref("busybox"), IMAGE],
                   check=True, timeout=120, capture_output=True)
    env.image_ref = IMAGE
    # A small ASan quarantine: RSS follows live memory (the burst test).
    env.daemon.env["ASAN_OPTIONS"] = (
        "detect_leaks=1:abort_on_error=0:halt_on_error=1:quarantine_size_mb=4")
    env.daemon.extra_args += list(extra_args)
    env.daemon.start()
    env.restart_client()
    return env


@pytest.fixture
def st(podenv_factory, pod_images, picocri_bin, spdyclient):  # noqa: F811
    return Stream(start_env(podenv_factory, pod_images, picocri_bin), spdyclient)


# ---- exec over SPDY -------------------------------------------------------------------
def test_exec_spdy_stdout_stderr_exit_code(st):
    url = st.exec_url(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert url.startswith("http://127.0.0.1:") and "/exec/" in url
    r = st.spdy(["exec", url])
    assert r.returncode == 7, r
    assert r.stdout == b"out\n"
    assert b"err\n" in r.stderr and b'"reason":"NonZeroExitCode"' in r.stderr
    r = st.spdy(["exec", st.exec_url(["true"])])
    assert r.returncode == 0 and b'"status":"Success"' in r.stderr, r
    # The process runs inside the container: its hostname and root.
    r = st.spdy(["exec", st.exec_url(["sh", "-c", "hostname; ls /bin/busybox"])])
    assert r.returncode == 0, r
    assert r.stdout.split() == [st.pod_cfg.hostname.encode(), b"/bin/busybox"]


def test_exec_spdy_stdin_and_tty_resize(st):
    url = st.exec_url(["sh", "-c", "wc -c"], stdin=True)
    r = st.spdy(["exec", "-stdin", url], inp=b"x" * 300000)
    assert r.returncode == 0 and r.stdout.strip() == b"300000", r
    url = st.exec_url(["sh", "-c", "sleep 0.5; stty size; tty"], tty=True, stdin=True,
                      stderr=False)
    r = st.spdy(["exec", "-tty", "-stdin", "-resize", "123x45", url], inp=b"")
    assert r.returncode == 0, r
    lines = r.stdout.replace(b"\r", b"").split(b"\n")
    assert lines[0] == b"45 123" and lines[1].startswith(b"/dev/pts/"), r


def test_exec_many_concurrent_sessions(st):
    n = 16
    urls = [st.exec_url(["sh", "-c", "echo %d; exit %d" % (i, i % 5)]) for i in range(n)]
    procs = []
    try:
        procs = [st.spdy_popen(["exec", u]) for u in urls]
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=90)
            assert p.returncode == i % 5 and out == b"%d\n" % i, (i, p.returncode, out, err)
    finally:
        for p in procs:
            stop_proc(p)


# ---- exec over WebSocket -----------------------------------------------------------------
def test_exec_ws_v5_stdin_close_and_v4_tty(st):
    url = st.exec_url(["sh", "-c", "cat; echo e >&2; exit 4"], stdin=True)
    ws = ws_connect(st.env, url, "v5.channel.k8s.io")
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.send_binary(b"\x00hello from ws")
    ws.send_binary(b"\xff\x00")  # v5: close stdin
    ch = ws_collect(ws)
    assert ch.get(1) == b"hello from ws" and ch.get(2) == b"e\n", ch
    assert b'"reason":"NonZeroExitCode"' in ch[3] and b'"message":"4"' in ch[3], ch
    url = st.exec_url(["sh", "-c", "sleep 0.5; stty size"], tty=True, stdin=True, stderr=False)
    ws = ws_connect(st.env, url, "v4.channel.k8s.io")
    ws.send_binary(b'\x04{"Width":91,"Height":17}')
    ch = ws_collect(ws)
    assert ch.get(1, b"").strip() == b"17 91", ch
    assert b'"status":"Success"' in ch.get(3, b""), ch


# ---- attach -------------------------------------------------------------------------------
def read_until(stream, marker, timeout=20):
    """Reads a pipe line by line until a line holds marker (bounded)."""
    got = []
    deadline = time.monotonic() + timeout
    result = {}

    def run():
        while time.monotonic() < deadline:
            line = stream.readline()
            if not line:
                break
            got.append(line)
            if marker in line:
                result["ok"] = True
                break

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert result.get("ok"), (marker, got)
    return got


def test_attach_output_stdin_detach(st):
    cid = st.start_ctr("echoer", ["sh", "-c", "while read l; do echo got $l; echo e$l >&2; "
                                  "done"], stdin=True)
    p = st.spdy_popen(["exec", "-stdin", st.attach_url(cid, stdin=True)], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)  # attached before the line is written
        p.stdin.write(b"one\n")
        p.stdin.flush()
        read_until(p.stdout, b"got one")
    finally:
        stop_proc(p)  # detach: the client goes away
    time.sleep(0.5)
    assert st.env.ctr_status(cid).state == st.pb.CONTAINER_RUNNING
    # Attach again: the container's stdin is still open (not StdinOnce).
    p = st.spdy_popen(["exec", "-stdin", st.attach_url(cid, stdin=True)], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)
        p.stdin.write(b"two\n")
        p.stdin.flush()
        read_until(p.stdout, b"got two")
        read_until(p.stderr, b"etwo")
    finally:
        stop_proc(p)
    assert st.env.ctr_status(cid).state == st.pb.CONTAINER_RUNNING
    # Output-only attach over WebSocket to a ticking container.
    tick = st.start_ctr("ticker", ["sh", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); "
                                   "sleep 0.1; done"])
    ws = ws_connect(st.env, st.attach_url(tick, stderr=False), "v4.channel.k8s.io")
    data = b""
    deadline = time.monotonic() + 20
    while data.count(b"tick") < 3 and time.monotonic() < deadline:
        op, msg = ws.recv_data()
        if msg[:1] == b"\x01":
            data += msg[1:]
    ws.close()
    assert data.count(b"tick") >= 3, data
    time.sleep(0.3)
    assert st.env.ctr_status(tick).state == st.pb.CONTAINER_RUNNING


def test_attach_tty_resize(st):
    cid = st.start_ctr("term", ["sh", "-c", "while :; do stty size; sleep 0.2; done"],
                       stdin=True, tty=True)
    p = st.spdy_popen(["exec", "-tty", "-stdin", "-resize", "100x30",
                       st.attach_url(cid, stdin=True, stderr=False, tty=True)],
                      stdin=subprocess.PIPE)
    try:
        read_until(p.stdout, b"30 100")
    finally:
        stop_proc(p)
    time.sleep(0.3)
    assert st.env.ctr_status(cid).state == st.pb.CONTAINER_RUNNING


def test_container_stopped_before_connect(st):
    """The URL was issued for a running container; it is stopped before the
    client connects: the session reports the failure on the error stream."""
    cid = st.start_ctr("gone", ["sleep", "3600"])
    url = st.exec_url(["echo", "never"], cid=cid)
    aurl = st.attach_url(cid)
    st.k.StopContainer(st.pb.StopContainerRequest(container_id=cid, timeout=0))
    st.env.wait_state(cid, st.pb.CONTAINER_EXITED)
    for u in (url, aurl):
        r = st.spdy(["exec", u], timeout=30)
        assert r.returncode == 1 and r.stdout == b"", r
        assert b'"status":"Failure"' in r.stderr, r


def test_container_exits_mid_session(st):
    # Exec: the container's init dies, the exec'd process with it (same
    # PID namespace); the session ends with a failure status, bounded.
    cid = st.start_ctr("victim", ["sleep", "3600"])
    p = st.spdy_popen(["exec", st.exec_url(["sh", "-c", "echo start; exec sleep 600"],
                                           cid=cid)])
    try:
        read_until(p.stdout, b"start")
        st.k.StopContainer(st.pb.StopContainerRequest(container_id=cid, timeout=0))
        out, err = p.communicate(timeout=30)
    finally:
        stop_proc(p)
    assert p.returncode != 0, (out, err)
    assert b"status: " in err, err
    # Attach: the session ends when the container exits.
    cid = st.start_ctr("victim2", ["sh", "-c", "echo hi; sleep 2; echo bye; exit 3"])
    r = st.spdy(["exec", st.attach_url(cid)], timeout=30)
    assert b"bye\n" in r.stdout, r
    assert st.env.wait_state(cid, st.pb.CONTAINER_EXITED).exit_code == 3
    # A stopped container: Exec and Attach fail at the CRI call.
    for method, req in (("Exec", st.pb.ExecRequest(container_id=cid, cmd=["true"],
                                                    stdout=True)),
                        ("Attach", st.pb.AttachRequest(container_id=cid, stdout=True))):
        e = st.k.error(method, req)
        assert e.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                            grpc.StatusCode.NOT_FOUND), (method, e.code(), e.details())
    assert st.env.daemon.running()


# ---- port-forward ----------------------------------------------------------------------------
def start_echo_server(st):
    cid = st.start_ctr("echo", ["nc", "-ll", "-p", str(ECHO_PORT), "-e", "cat"])
    # The listener is up once a connection through the pod IP is echoed.
    ip = st.env.pod_ip(st.pod)

    def ready():
        try:
            s = netns_connect(st.env.netns.name, ip, ECHO_PORT, timeout=2)
        except OSError:
            return False
        try:
            s.sendall(b"probe")
            return s.recv(16) == b"probe"
        except OSError:
            return False
        finally:
            s.close()
    wait_for(ready, 20, "echo server in the pod")
    return cid


def test_portforward_spdy_and_ws(st):
    start_echo_server(st)
    pf = st.spdy_popen(["pf-listen", st.pf_url(), str(ECHO_PORT)], stdin=subprocess.PIPE)
    try:
        line = pf.stdout.readline().decode()
        assert line.startswith("listening"), line
        lport = int(line.split()[1])
        socks = [netns_connect(st.env.netns.name, "127.0.0.1", lport) for _ in range(4)]
        for i, s in enumerate(socks):
            s.sendall(b"hello %d" % i)
        for i, s in enumerate(socks):
            assert s.recv(100) == b"hello %d" % i
        payload = os.urandom(8 << 20)
        s = socks[0]
        threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                         daemon=True).start()
        got = recv_all(s)
        assert len(got) == len(payload) and zlib.crc32(got) == zlib.crc32(payload)
        for s in socks:
            s.close()
    finally:
        pf.stdin.close()
        stop_proc(pf)
    # WebSocket: data channel 0, error channel 1, 2-byte port prefixes.
    ws = ws_connect(st.env, st.pf_url(), "v4.binary.portforward.k8s.io", "?port=%d" % ECHO_PORT)
    prefix = bytes([ECHO_PORT & 0xff, ECHO_PORT >> 8])
    assert ws.recv_data()[1] == b"\x00" + prefix
    assert ws.recv_data()[1] == b"\x01" + prefix
    ws.send_binary(b"\x00ping over ws")
    assert ws.recv_data()[1] == b"\x00ping over ws"
    ws.close()
    # Two ports on one connection (channels 0/1 and 2/3); nothing listens
    # on port 9 in the pod: its error channel says so, the other still works.
    ws = ws_connect(st.env, st.pf_url(), "v4.binary.portforward.k8s.io",
                    "?port=%d&port=9" % ECHO_PORT)
    ws.send_binary(b"\x00two ports")
    ch = {}
    deadline = time.monotonic() + 20
    while (b"two ports" not in ch.get(0, b"") or b"port 9" not in ch.get(3, b"")) and \
            time.monotonic() < deadline:
        op, data = ws.recv_data()
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        ch[data[0]] = ch.get(data[0], b"") + data[1:]
    ws.close()
    assert ch.get(0, b"")[2:] == b"two ports", ch
    assert b"error forwarding port 9" in ch.get(3, b""), ch


def test_portforward_host_network_pod(st):
    """A host-network pod's port-forward dials in the daemon's namespace."""
    pcfg = pod_config(st.env, host_network=True)
    pod = st.k.RunPodSandbox(st.pb.RunPodSandboxRequest(config=pcfg)).pod_sandbox_id
    cfg = container_config(st.env, pcfg, "hostecho", ["nc", "-ll", "-p", "8090", "-e", "cat"])
    cid = st.env.create(pod, pcfg, cfg)
    st.k.StartContainer(st.pb.StartContainerRequest(container_id=cid))

    def ready():
        try:
            netns_connect(st.env.netns.name, "127.0.0.1", 8090, timeout=2).close()
            return True
        except OSError:
            return False
    wait_for(ready, 20, "echo server in the host-network pod")
    url = st.k.PortForward(st.pb.PortForwardRequest(pod_sandbox_id=pod)).url
    ws = ws_connect(st.env, url, "v4.binary.portforward.k8s.io", "?port=8090")
    assert ws.recv_data()[1] == b"\x00\x9a\x1f" and ws.recv_data()[1] == b"\x01\x9a\x1f"
    ws.send_binary(b"\x00host net")
    assert ws.recv_data()[1] == b"\x00host net"
    ws.close()


# ---- tokens and bad ids ------------------------------------------------------------------------
def test_reused_and_expired_tokens(st):
    url = st.exec_url(["true"])
    assert st.spdy(["exec", url]).returncode == 0
    r = st.spdy(["exec", url])
    assert r.returncode == 3 and b"404" in r.stderr, r
    old = st.exec_url(["true"])
    time.sleep(62)  # tokens live one minute
    r = st.spdy(["exec", old])
    assert r.returncode == 3 and b"404" in r.stderr, r
    assert st.spdy(["exec", st.exec_url(["true"])]).returncode == 0


def test_unknown_container_and_pod(st):
    pb = st.pb
    nope = "0123456789abcdef" * 4
    for method, req in (
            ("Exec", pb.ExecRequest(container_id=nope, cmd=["true"], stdout=True)),
            ("Attach", pb.AttachRequest(container_id=nope, stdout=True)),
            ("PortForward", pb.PortForwardRequest(pod_sandbox_id=nope))):
        e = st.k.error(method, req)
        assert e.code() == grpc.StatusCode.NOT_FOUND, (method, e.code(), e.details())
    e = st.k.error("Exec", pb.ExecRequest(container_id=st.cid, cmd=[], stdout=True))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- resources --------------------------------------------------------------------------------
def test_stdin_burst_100mib_bounded_rss(st):
    url = st.exec_url(["sh", "-c", "sleep 1; wc -c"], stdin=True)
    before = st.daemon_rss_kib()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], st.daemon_rss_kib())
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    p = st.spdy_popen(["exec", "-stdin", url], stdin=subprocess.PIPE)
    try:
        chunk = b"z" * (1 << 20)
        try:
            for _ in range(100):
                p.stdin.write(chunk)
            p.stdin.close()
            p.stdin = None  # communicate() would flush it
        except BrokenPipeError:
            raise AssertionError("the client died: %r" % (stop_proc(p),))
        out, err = p.communicate(timeout=120)
    finally:
        stop.set()
        t.join()
        stop_proc(p)
    assert p.returncode == 0 and out.strip() == b"%d" % (100 << 20), (out, err)
    assert peak[0] - before < 32 * 1024, (before, peak[0])


def test_stdout_flood_bounded_rss(st):
    """200 MB of output to a client that reads slowly at first: the daemon
    stops reading the process while the socket queue is full."""
    url = st.exec_url(["head", "-c", str(200 << 20), "/dev/zero"])
    before = st.daemon_rss_kib()
    p = st.spdy_popen(["exec", url])
    try:
        time.sleep(3)  # nobody reads: the pipe and socket queues fill up
        mid = st.daemon_rss_kib()
        n = 0
        while True:
            d = p.stdout.read(1 << 20)
            if not d:
                break
            n += len(d)
        p.wait(60)
    finally:
        stop_proc(p)
    assert p.returncode == 0 and n == 200 << 20, (p.returncode, n)
    assert mid - before < 32 * 1024, (before, mid)


def test_daemon_stops_with_sessions_open(st):
    """SIGTERM with an exec, an attach and a port-forward connection open:
    the daemon exits 0 within the harness's bound, the clients see their
    connections end, the containers keep running (monitors own them)."""
    start_echo_server(st)
    clients = [st.spdy_popen(["exec", "-stdin", st.exec_url(["sh", "-c", "echo up; exec cat"],
                                                          stdin=True)],
                             stdin=subprocess.PIPE),
               st.spdy_popen(["exec", st.attach_url(st.cid)])]
    pf = st.spdy_popen(["pf-listen", st.pf_url(), str(ECHO_PORT)], stdin=subprocess.PIPE)
    try:
        read_until(clients[0].stdout, b"up")
        lport = int(pf.stdout.readline().split()[1])
        s = netns_connect(st.env.netns.name, "127.0.0.1", lport)
        s.sendall(b"ping")
        assert s.recv(16) == b"ping"
        t0 = time.monotonic()
        assert st.env.daemon.stop() == 0
        assert time.monotonic() - t0 < 10
        for c in clients:
            c.wait(30)  # the server closed the connection
        s.settimeout(20)
        assert recv_all(s) == b""
        s.close()
    finally:
        for c in clients + [pf]:
            stop_proc(c)
    st.env.daemon.start()
    st.k = st.env.restart_client()
    assert st.env.ctr_status(st.cid).state == st.pb.CONTAINER_RUNNING
    r = st.spdy(["exec", st.exec_url(["echo", "again"])])
    assert r.returncode == 0 and r.stdout == b"again\n", r


def test_stream_address_flag_and_config(podenv_factory, pod_images, picocri_bin,  # noqa: F811
                                        spdyclient, tmp_path):
    port = random.randint(20000, 40000)  # the namespace is the test's own: nothing else binds
    cfg = str(tmp_path / "picocri.yaml")
    with open(cfg, "w") as f:
        f.write("stream-address: 127.0.0.1:%d\n" % (port + 1))
    # The flag overrides the file.
    env = start_env(podenv_factory, pod_images, picocri_bin,
                    ["--config", cfg, "--stream-address", "127.0.0.1:%d" % port])
    s = Stream(env, spdyclient)
    url = s.exec_url(["echo", "flag"])
    assert url.startswith("http://127.0.0.1:%d/exec/" % port), url
    r = s.spdy(["exec", url])
    assert r.returncode == 0 and r.stdout == b"flag\n", r
    assert "streaming server address=127.0.0.1:%d port=%d" % (port, port) in \
        env.daemon.stderr_text()


def test_stream_address_bad(picocri_bin, tmp_path):
    r = subprocess.run([picocri_bin, "serve", "--socket", str(tmp_path / "s.sock"),
                        "--root", str(tmp_path / "root"), "--state", str(tmp_path / "state"),
                        "--stream-address", "not-an-address"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "stream address not-an-address" in r.stderr, r.stderr
