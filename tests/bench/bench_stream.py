"""Streaming-server benchmark workload (agent/stream).

What: exec round trip (`echo hi` through SPDY remote-command v4: upgrade,
streams, process, status) p50/p90, and port-forward throughput (MB/s for a
200 MB transfer through SPDY port-forward to a local sink) through picocri's
streaming server, with the Go spdystream client of tests/integration.

How the harness calls it: `workload_stream(rt, cri, opts) -> [Metric]`
(register it in harness.py's WORKLOADS as "stream").  Until the CRI runtime
service issues streaming URLs, it drives the test-only `picocri
stream-test` harness (host processes) on its own; the runtime `rt` is used
only for its binary path, so the containerd column stays empty for now.
Standalone: `PICOCRI_BIN=build/host/picocri python3 tests/bench/bench_stream.py`.

Invariants: every process it starts is stopped by PID; every wait is
bounded; temporary files live under one temporary directory.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

EXEC_CALLS = 200
PF_BYTES = 200 * 1000 * 1000


def _percentile(vals, q):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]


def _sink_server():
    """A local TCP server that counts bytes and answers with the count."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def run():
        c, _ = srv.accept()
        n = 0
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            n += len(d)
        c.sendall(b"%d" % n)
        c.close()
    threading.Thread(target=run, daemon=True).start()
    return srv


def run_stream_bench(picocri_bin, calls=EXEC_CALLS, pf_bytes=PF_BYTES):
    """Returns [(name, value, unit, better)]."""
    import pytest  # noqa: F401  (the integration helpers use pytest.skip)
    from test_stream_spdy import Harness, harness_cmd, build_spdyclient

    os.environ["PICOCRI_BIN"] = picocri_bin
    tmp = tempfile.mkdtemp(prefix="pcbench-strm-")
    h = None
    try:
        h = Harness(harness_cmd(tmp))
        client = build_spdyclient(tmp)
        loop = subprocess.Popen([client, "exec-loop"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        lat = []
        for _ in range(calls):
            loop.stdin.write(h.exec_url(["/bin/echo", "hi"]) + "\n")
            loop.stdin.flush()
            us, code = loop.stdout.readline().split()
            assert code == "0"
            lat.append(int(us) / 1000.0)
        loop.stdin.close()
        loop.wait(timeout=30)

        srv = _sink_server()
        pf = subprocess.Popen([client, "pf-listen", h.issue("portforward", "-"),
                               str(srv.getsockname()[1])], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
        lport = int(pf.stdout.readline().split()[1])
        s = socket.create_connection(("127.0.0.1", lport), timeout=120)
        chunk = b"\0" * (1 << 20)
        t0 = time.monotonic()
        sent = 0
        while sent < pf_bytes:
            n = min(len(chunk), pf_bytes - sent)
            s.sendall(chunk[:n])
            sent += n
        s.shutdown(socket.SHUT_WR)
        got = int(s.recv(64) or b"0")
        secs = time.monotonic() - t0
        s.close()
        pf.stdin.close()
        pf.wait(timeout=30)
        assert got == pf_bytes, (got, pf_bytes)
        return [("stream exec echo p50", _percentile(lat, 0.5), "ms", "lower"),
                ("stream exec echo p90", _percentile(lat, 0.9), "ms", "lower"),
                ("stream port-forward 200MB", pf_bytes / secs / 1e6, "MB/s", "higher")]
    finally:
        if h is not None:
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def workload_stream(rt, cri, opts):
    """Harness entry: picocri only (containerd's streaming needs a container)."""
    from harness import Metric
    if rt.name != "picocri":
        return []
    return [Metric(n, v, u, b) for n, v, u, b in run_stream_bench(rt.binary)]


if __name__ == "__main__":
    for name, value, unit, _ in run_stream_bench(os.environ.get("PICOCRI_BIN",
                                                                "build/host/picocri")):
        print("%-28s %10.2f %s" % (name, value, unit))
