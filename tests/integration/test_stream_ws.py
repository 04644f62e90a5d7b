"""Streaming server (agent/stream) over WebSocket, driven by Debian's
python3-websocket (a client that is not ours): the channel protocols
(v5/v4 binary, base64), exit codes through the Status on channel 3, tty
resize, port-forward with port query parameters and the 2-byte port
prefix into a network namespace the test creates, and garbage frames.
Shares the harness helpers of test_stream_spdy.py."""

import base64
import os
import socket

import pytest

from test_stream_spdy import harness_cmd, Harness, NetnsServer, build_spdyclient  # noqa: F401

websocket = pytest.importorskip("websocket")


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return {"harness": harness_cmd(str(tmp_path_factory.mktemp("strmws")))}


@pytest.fixture
def harness(tools):
    h = Harness(tools["harness"])
    yield h
    rc, log = h.stop()
    assert rc == 0, log
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log


@pytest.fixture
def netns_server():
    s = NetnsServer(port=8081)
    yield s
    s.close()


def ws_connect(url, proto, query=""):
    return websocket.create_connection(url.replace("http://", "ws://") + query,
                                       subprotocols=[proto] if proto else None, timeout=20)


def collect(ws, b64=False):
    """Reads until the server closes; returns {channel: bytes}."""
    chans = {}
    while True:
        try:
            op, data = ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if b64:
            ch, data = int(data[:1]), base64.b64decode(data[1:])
        else:
            ch, data = data[0], data[1:]
        chans[ch] = chans.get(ch, b"") + data
    return chans


def test_ws_v5_exec_stdin_close_and_exit_code(harness):
    url = harness.exec_url(["/bin/sh", "-c", "cat; echo e >&2; exit 4"], stdin=True)
    ws = ws_connect(url, "v5.channel.k8s.io")
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.send_binary(b"\x00hello")
    ws.send_binary(b"\xff\x00")  # v5: close stdin
    ch = collect(ws)
    assert ch[1] == b"hello" and ch[2] == b"e\n"
    assert b'"reason":"NonZeroExitCode"' in ch[3] and b'"message":"4"' in ch[3]


def test_ws_v4_success_and_tty_resize(harness):
    url = harness.exec_url(["/bin/sh", "-c", "sleep 0.5; stty size"], tty=True, stdin=True,
                           stderr=False)
    ws = ws_connect(url, "v4.channel.k8s.io")
    ws.send_binary(b'\x04{"Width":91,"Height":17}')
    ch = collect(ws)
    assert ch[1].strip() == b"17 91"
    assert ch[3] == b'{"metadata":{},"status":"Success"}'


def test_ws_base64(harness):
    url = harness.exec_url(["/bin/sh", "-c", "printf '\\001\\377'; exit 0"])
    ws = ws_connect(url, "base64.channel.k8s.io")
    ch = collect(ws, b64=True)
    assert ch[1] == b"\x01\xff"


def test_ws_bad_protocol_and_garbage(harness):
    url = harness.exec_url(["/bin/true"])
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_connect(url, "v9.nothing.k8s.io")
    assert e.value.status_code == 403
    url = harness.exec_url(["/bin/sleep", "2"])
    ws = ws_connect(url, "v4.channel.k8s.io")
    ws.sock.sendall(os.urandom(64))  # unmasked garbage: the server fails the connection
    ws.sock.settimeout(10)
    try:
        while ws.sock.recv(4096):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    assert harness.alive()
    ws = ws_connect(harness.exec_url(["/bin/echo", "ok"]), "v4.channel.k8s.io")
    assert collect(ws)[1] == b"ok\n"


def test_ws_portforward_in_netns(harness, netns_server):
    url = harness.issue("portforward", netns_server.path)
    ws = ws_connect(url, "v4.binary.portforward.k8s.io", "?port=%d" % netns_server.port)
    prefix = bytes([netns_server.port & 0xff, netns_server.port >> 8])
    assert ws.recv_data()[1] == b"\x00" + prefix  # data channel 0
    assert ws.recv_data()[1] == b"\x01" + prefix  # error channel 1
    ws.send_binary(b"\x00ping over ws")
    assert ws.recv_data()[1] == b"\x00ping over ws"
    ws.close()
    url = harness.issue("portforward", netns_server.path)
    ws = ws_connect(url, "v4.binary.portforward.k8s.io", "?port=9")
    ch = collect(ws)
    assert b"error forwarding port 9" in ch.get(1, b""), ch
