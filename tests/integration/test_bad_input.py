"""Hostile and unlucky clients.  After each one the daemon must still answer
Version, and (fixture teardown) exit 0 on SIGTERM with no sanitizer report.

Bytes on the raw socket, malformed gRPC calls, oversized messages, clients
that vanish mid-call, many calls and connections at once, deadlines.
"""

import concurrent.futures
import random
import socket
import time

import grpc
import pytest

import cri_harness
import h2raw

VERSION = "/runtime.v1.RuntimeService/Version"
MiB = 1024 * 1024


def assert_alive(daemon):
    ch = cri_harness.unix_channel(daemon.sock)
    try:
        resp = cri_harness.Cri(ch, daemon.pb).Version(timeout=10)
    finally:
        ch.close()
    assert resp.runtime_name == "picocri"
    assert daemon.running()


def send_and_expect_close(daemon, data, timeout=5.0):
    s = h2raw.unix_connect(daemon.sock)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return True, b""
        return h2raw.read_until_eof(s, timeout)
    finally:
        s.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes(daemon, seed):
    data = random.Random(seed).randbytes(64 * 1024)
    closed, _ = send_and_expect_close(daemon, data)
    assert closed, "daemon kept a connection that sent garbage open"
    assert_alive(daemon)


def test_random_bytes_after_preface(daemon):
    """A valid preface followed by garbage frames."""
    data = h2raw.PREFACE + random.Random(7).randbytes(16 * 1024)
    closed, _ = send_and_expect_close(daemon, data)
    assert closed, "daemon kept a connection that sent garbage frames open"
    assert_alive(daemon)


def test_http1_request(daemon):
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: it\r\n\r\n"
    closed, _ = send_and_expect_close(daemon, req)
    assert closed, "daemon kept an HTTP/1.1 connection open"
    up = (b"POST /runtime.v1.RuntimeService/Version HTTP/1.1\r\nHost: localhost\r\n"
          b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
          b"Content-Length: 0\r\n\r\n")
    closed, _ = send_and_expect_close(daemon, up)
    assert closed
    assert_alive(daemon)


def test_truncated_preface_then_close(daemon):
    for cut in (1, 5, 16, 23):
        s = h2raw.unix_connect(daemon.sock)
        s.sendall(h2raw.PREFACE[:cut])
        s.close()
    # And one that stays open: others must still be served meanwhile.
    held = h2raw.unix_connect(daemon.sock)
    held.sendall(b"PRI * HTTP/2.0\r\n")
    try:
        assert_alive(daemon)
    finally:
        held.close()
    assert_alive(daemon)


@pytest.mark.parametrize("payload", [
    b"\x0a\xff",                      # string field, truncated length varint
    b"\x0a\x05ab",                    # string field, length past the end
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # overlong tag varint
    b"\x0f",                          # wire type 7 (invalid)
    b"\x12\x80\x80\x80\x80\x10",       # field 2, length 2^32: far past the end
], ids=["trunc-len", "short-body", "overlong-varint", "bad-wiretype",
        "huge-len"])
def test_undecodable_protobuf(daemon, payload):
    cri = daemon.cri()
    for path in (VERSION, "/runtime.v1.RuntimeService/Status",
                 "/runtime.v1.RuntimeService/UpdateRuntimeConfig"):
        with pytest.raises(grpc.RpcError) as ei:
            cri.raw(path, payload)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT, \
            "%s with %r: %s %s" % (path, payload, ei.value.code(), ei.value.details())
    assert_alive(daemon)


def test_message_over_16mib(daemon, pb):
    cri = daemon.cri()
    body = b"a" * (16 * MiB + 1024)
    big = pb.VersionRequest(version=body.decode()).SerializeToString()
    with pytest.raises(grpc.RpcError) as ei:
        cri.raw(VERSION, big, timeout=60)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, ei.value.details()
    assert_alive(daemon)


def test_large_valid_message(daemon, pb):
    """8 MiB is under the 16 MiB cap: reassembled across many DATA frames."""
    cri = daemon.cri()
    resp = cri.Version(pb.VersionRequest(version="v" * (8 * MiB)), timeout=60)
    assert resp.runtime_api_version == "v1"
    assert_alive(daemon)


def test_oversized_length_prefix_without_body(daemon):
    """A 5-byte prefix announcing 4 GiB - 1, then nothing: no allocation of it."""
    raw = h2raw.RawH2(daemon.sock)
    try:
        sid = raw.start_call(VERSION)
        raw.send(sid, b"\x00\xff\xff\xff\xff", end_stream=True)
        st = raw.wait(sid, 10)
        assert st.done, "no answer to a 4 GiB length prefix"
        assert st.reset_code is not None or st.grpc_status() == 8, (st.headers, st.trailers)
    finally:
        raw.close()
    assert_alive(daemon)


def test_compressed_flag_without_encoding(daemon):
    raw = h2raw.RawH2(daemon.sock)
    try:
        sid = raw.start_call(VERSION)
        raw.send(sid, h2raw.grpc_frame(b"", compressed=True), end_stream=True)
        st = raw.wait(sid, 10)
        assert st.done
        assert st.grpc_status() not in (None, 0), (st.headers, st.trailers)
    finally:
        raw.close()
    assert_alive(daemon)


def test_client_vanishes_mid_call(daemon, pb):
    msg = pb.VersionRequest(version="0.1.0").SerializeToString()
    for i in range(30):
        raw = h2raw.RawH2(daemon.sock)
        sid = raw.start_call(VERSION)
        if i % 3 == 0:
            pass                                     # headers only
        elif i % 3 == 1:
            raw.send(sid, h2raw.grpc_frame(msg)[:4])  # half a prefix
        else:
            raw.send(sid, b"\x00\x00\x00\x01\x00" + b"x" * 100)  # half a body
        raw.close()
    assert_alive(daemon)


def test_client_vanishes_before_response(daemon, pb):
    """Full request then an immediate close: the reply hits a closed socket
    (EPIPE, never a fatal SIGPIPE)."""
    msg = pb.StatusRequest(verbose=True).SerializeToString()
    for _ in range(50):
        raw = h2raw.RawH2(daemon.sock)
        for _ in range(5):
            raw.call("/runtime.v1.RuntimeService/Status", msg)
        raw.sock.shutdown(socket.SHUT_RDWR)
        raw.close()
    time.sleep(0.5)
    assert_alive(daemon)


def test_raw_h2_call_ok(daemon, pb):
    """Our raw client against a good call: the baseline for the tests above."""
    raw = h2raw.RawH2(daemon.sock)
    try:
        sid = raw.call(VERSION, pb.VersionRequest(version="0.1.0").SerializeToString())
        st = raw.wait(sid, 10)
        assert st.ended and st.grpc_status() == 0, (st.headers, st.trailers)
        assert dict(st.headers)[":status"] == "200"
        assert dict(st.headers)["content-type"].startswith("application/grpc")
        assert st.data[0] == 0 and int.from_bytes(st.data[1:5], "big") == len(st.data) - 5
        resp = pb.VersionResponse.FromString(st.data[5:])
        assert resp.runtime_name == "picocri"
    finally:
        raw.close()


def test_1000_concurrent_calls_one_connection(daemon, pb):
    cri = daemon.cri(timeout=120)
    req = pb.VersionRequest(version="0.1.0")
    futs = [cri.future("Version", req, timeout=120) for _ in range(1000)]
    results = [f.result() for f in futs]
    assert len(results) == 1000
    assert all(r.runtime_name == "picocri" and r.version == "0.1.0" for r in results)
    # Interleave a different RPC as well.
    futs = [cri.future("Status" if i % 2 else "Version", timeout=120) for i in range(200)]
    for f in futs:
        f.result()
    assert_alive(daemon)


def test_50_connections_at_once(daemon, pb):
    idle = [h2raw.unix_connect(daemon.sock) for _ in range(50)]
    channels = [cri_harness.unix_channel(daemon.sock) for _ in range(50)]
    try:
        clients = [cri_harness.Cri(ch, pb, timeout=60) for ch in channels]
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as ex:
            results = list(ex.map(lambda c: [c.Version().runtime_name for _ in range(5)],
                                  clients))
        assert results == [["picocri"] * 5] * 50
    finally:
        for ch in channels:
            ch.close()
        for s in idle:
            s.close()
    assert_alive(daemon)


def test_grpc_timeout_while_waiting_for_body(daemon):
    """A call whose body never comes ends when its grpc-timeout expires."""
    raw = h2raw.RawH2(daemon.sock)
    try:
        t0 = time.monotonic()
        sid = raw.start_call(VERSION, [("grpc-timeout", "300m")])
        st = raw.wait(sid, 10)
        elapsed = time.monotonic() - t0
        assert st.done, "grpc-timeout 300m not honoured within 10 s"
        assert 0.25 <= elapsed <= 5.0, elapsed
        assert st.reset_code is not None or st.grpc_status() == 4, (st.headers, st.trailers)
    finally:
        raw.close()
    assert_alive(daemon)


def test_no_grpc_timeout_waits_for_body(daemon, pb):
    """Without grpc-timeout the call waits for its body, then succeeds."""
    raw = h2raw.RawH2(daemon.sock)
    try:
        sid = raw.start_call(VERSION)
        st = raw.wait(sid, 1.0)
        assert not st.done, "call ended before its request was complete"
        msg = pb.VersionRequest(version="0.1.0").SerializeToString()
        frame = h2raw.grpc_frame(msg)
        for i in range(len(frame)):                 # one byte per DATA frame
            raw.send(sid, frame[i:i + 1])
        raw.send(sid, b"", end_stream=True)
        st = raw.wait(sid, 10)
        assert st.ended and st.grpc_status() == 0, (st.headers, st.trailers)
        assert pb.VersionResponse.FromString(st.data[5:]).runtime_name == "picocri"
    finally:
        raw.close()


@pytest.mark.parametrize("value", ["1n", "0m", "99999999H", "abc", "", "12345678901S"])
def test_grpc_timeout_odd_values(daemon, pb, value):
    raw = h2raw.RawH2(daemon.sock)
    try:
        sid = raw.call(VERSION, pb.VersionRequest().SerializeToString(),
                       [("grpc-timeout", value)])
        st = raw.wait(sid, 10)
        assert st.done, "no answer with grpc-timeout %r" % value
    finally:
        raw.close()
    assert_alive(daemon)


def test_client_deadline_exceeded(daemon):
    """Calls whose client deadline passes at once (the client cancels them,
    or they win the race): the daemon serves on."""
    cri = daemon.cri()
    for _ in range(50):
        try:
            cri.Version(timeout=0.000001)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    assert_alive(daemon)


def test_many_streams_reset_by_client(daemon, pb):
    raw = h2raw.RawH2(daemon.sock)
    try:
        msg = h2raw.grpc_frame(pb.VersionRequest().SerializeToString())
        for _ in range(200):
            sid = raw.start_call(VERSION)
            raw.send(sid, msg, end_stream=True)
            raw.conn.reset_stream(sid, error_code=8)  # CANCEL
            raw.flush()
        raw.pump(0.5)
        assert not raw.closed
        sid = raw.call(VERSION, pb.VersionRequest().SerializeToString())
        st = raw.wait(sid, 10)
        assert st.ended and st.grpc_status() == 0
    finally:
        raw.close()
    assert_alive(daemon)
