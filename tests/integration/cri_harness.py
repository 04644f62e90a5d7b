"""Shared helpers for picocri's integration tests and benchmarks.

What: generate Python message classes from cri/api.proto at run time (protoc
--python_out, no grpc_tools), a small CRI client that calls any RPC by name
through grpc's generic unary API, a raw-bytes call for malformed requests, and
`Daemon`, which runs one `picocri serve` on a private socket with every
directory under its own temporary folder.

Why: the daemon must be driven by a gRPC stack that is not ours (python3-grpcio
from Debian), and later tests (images, pods, exec) reuse the same daemon
wrapper with extra flags, so nothing here is specific to one RPC.

Invariants: every wait is bounded in time; a Daemon only ever signals the
process it started (by PID); a sanitizer report in the daemon's stderr is a
failure of whoever checks `Daemon.sanitizer_report()` (the pytest fixture
does it at teardown).
"""

import ctypes
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO = os.path.join(REPO, "cri", "api.proto")
PACKAGE = "runtime.v1"
SERVICES = ("RuntimeService", "ImageService")

# Sanitizer settings for a daemon built with SANITIZE=address,undefined.
# abort_on_error=0 lets ASan exit with its own code and print its report.
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:"
    "detect_stack_use_after_return=1:check_initialization_order=1:"
    "strict_string_checks=1:print_summary=1",
    "LSAN_OPTIONS": "print_suppressions=0",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:print_summary=1",
}

SAN_PATTERNS = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL"
    r"|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|SUMMARY: AddressSanitizer"
    r"|LeakSanitizer has encountered a fatal error"
)


def load_proto(outdir, proto=PROTO):
    """Runs protoc --python_out on `proto` into `outdir`; returns the module."""
    os.makedirs(outdir, exist_ok=True)
    src_dir, name = os.path.split(os.path.abspath(proto))
    subprocess.run(
        ["protoc", "-I", src_dir, "--python_out=" + outdir, name],
        check=True, timeout=60,
    )
    modname = name[: -len(".proto")] + "_pb2"
    spec = importlib.util.spec_from_file_location(modname, os.path.join(outdir, modname + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


class Cri:
    """A CRI client over one grpc channel, calling RPCs by method name.

    cri.Version(pb.VersionRequest()) or cri.call("Version", req, timeout=5).
    Requests default to the empty message of the method's input type.
    """

    def __init__(self, channel, pb, timeout=10.0):
        self.channel = channel
        self.pb = pb
        self.timeout = timeout
        self._methods = {}
        fd = pb.DESCRIPTOR
        for sname in SERVICES:
            for m in fd.services_by_name[sname].methods:
                self._methods[m.name] = (sname, m)

    def path(self, method):
        sname, _ = self._methods[method]
        return "/%s.%s/%s" % (PACKAGE, sname, method)

    def types(self, method):
        _, m = self._methods[method]
        return getattr(self.pb, m.input_type.name), getattr(self.pb, m.output_type.name)

    def callable(self, method):
        req_t, resp_t = self.types(method)
        return self.channel.unary_unary(
            self.path(method),
            request_serializer=lambda msg: msg.SerializeToString(),
            response_deserializer=resp_t.FromString,
        )

    def call(self, method, request=None, timeout=None, metadata=None):
        req_t, _ = self.types(method)
        if request is None:
            request = req_t()
        return self.callable(method)(
            request, timeout=timeout or self.timeout, metadata=metadata)

    def future(self, method, request=None, timeout=None):
        req_t, _ = self.types(method)
        return self.callable(method).future(
            request if request is not None else req_t(), timeout=timeout or self.timeout)

    def raw(self, path, payload, timeout=None):
        """Sends `payload` bytes as the request message of `path`; returns bytes."""
        fn = self.channel.unary_unary(
            path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return fn(payload, timeout=timeout or self.timeout)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(name)
        return lambda request=None, **kw: self.call(name, request, **kw)


def unix_channel(sock, options=None):
    opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.enable_retries", 0)]
    return grpc.insecure_channel("unix:" + sock, options=opts + list(options or []))


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: SIGKILL this child if the test process dies (no orphans)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def mkworkdir(prefix):
    # Short paths: a unix socket path must fit in 108 bytes.
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


class Daemon:
    """One `picocri serve` with its socket and directories under `workdir`.

    extra_args are appended to the command line (registries, config, ...).
    env adds to the environment (the sanitizer options are always set).
    """

    def __init__(self, binary, pb, workdir, extra_args=(), env=None,
                 log_level="debug", cni_conf_dir=None):
        self.binary = binary
        self.pb = pb
        self.workdir = workdir
        self.sock = os.path.join(workdir, "picocri.sock")
        self.root = os.path.join(workdir, "root")
        self.state = os.path.join(workdir, "state")
        self.cni_conf_dir = cni_conf_dir or os.path.join(workdir, "cni")
        self.stderr_path = os.path.join(workdir, "daemon.stderr")
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_level = log_level
        self.proc = None
        self.stopped = False  # set when stop() ended the process on purpose
        self.exit_codes = []
        self._channels = []
        for d in (self.root, self.state, self.cni_conf_dir):
            os.makedirs(d, exist_ok=True)

    # ---- lifecycle -------------------------------------------------------
    def argv(self):
        return [self.binary, "serve", "--socket", self.sock, "--root", self.root,
                "--state", self.state, "--log-level", self.log_level,
                "--cni-conf-dir", self.cni_conf_dir] + self.extra_args

    def start(self, timeout=30.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = dict(os.environ)
        env.update(SAN_ENV)
        env.update(self.env)
        self.stopped = False
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                env=env, close_fds=True, preexec_fn=die_with_parent)
        finally:
            err.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError("daemon exited with %d during start-up\n%s"
                                     % (rc, self.stderr_tail()))
            if os.path.exists(self.sock):
                ch = unix_channel(self.sock)
                try:
                    Cri(ch, self.pb).Version(timeout=2)
                    return
                except grpc.RpcError as e:
                    last = e
                finally:
                    ch.close()
            time.sleep(0.05)
        raise AssertionError("daemon did not answer Version within %.0fs (last: %r)\n%s"
                             % (timeout, last, self.stderr_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0, sig=signal.SIGTERM):
        """Signals the daemon (by PID) and waits; returns its exit code.

        Kills it with SIGKILL and raises if it does not exit within timeout.
        """
        self.close_channels()
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                self.exit_codes.append(self.proc.returncode)
                raise AssertionError("daemon did not exit within %.0fs of %s\n%s"
                                     % (timeout, signal.Signals(sig).name, self.stderr_tail()))
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        return rc

    def restart(self, timeout=30.0):
        rc = self.stop()
        assert rc == 0, "daemon exited %r on SIGTERM\n%s" % (rc, self.stderr_tail())
        return self.start(timeout)

    # ---- clients -----------------------------------------------------------
    def channel(self, options=None):
        ch = unix_channel(self.sock, options)
        self._channels.append(ch)
        return ch

    def cri(self, timeout=10.0):
        return Cri(self.channel(), self.pb, timeout)

    def close_channels(self):
        for ch in self._channels:
            ch.close()
        self._channels = []

    # ---- diagnostics -------------------------------------------------------
    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, n=60):
        lines = self.stderr_text().splitlines()
        return "---- daemon stderr (last %d lines) ----\n%s" % (n, "\n".join(lines[-n:]))

    def sanitizer_report(self):
        """Returns the sanitizer report found in the daemon's stderr, or ''."""
        text = self.stderr_text()
        m = SAN_PATTERNS.search(text)
        if not m:
            return ""
        start = text.rfind("\n", 0, max(0, m.start() - 200)) + 1
        return text[start:start + 6000]

    def cleanup(self):
        if self.running():
            self.proc.kill()  # only our own child, by PID
            self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def sanitizer_report_in(text):
    m = SAN_PATTERNS.search(text or "")
    return text[max(0, m.start() - 200):m.start() + 4000] if m else ""
