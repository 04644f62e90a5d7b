"""A raw HTTP/2 (h2c, prior knowledge) client for malformed or half-finished
gRPC calls that grpcio will not produce: requests without END_STREAM, custom
grpc-timeout values, abrupt closes.  Built on python3-h2 (Debian).

Every read is bounded by a deadline; nothing here retries.
"""

import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def grpc_frame(message, compressed=False):
    """One Length-Prefixed-Message: flag, 4-byte big-endian length, bytes."""
    return bytes([1 if compressed else 0]) + len(message).to_bytes(4, "big") + message


def grpc_headers(path, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "localhost"), ("te", "trailers"),
            ("content-type", "application/grpc")] + list(extra)


def unix_connect(path, timeout=5.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_until_eof(sock, timeout=5.0, limit=1 << 20):
    """Reads until the peer closes; returns (closed, bytes_read)."""
    deadline = time.monotonic() + timeout
    got = b""
    while time.monotonic() < deadline and len(got) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, got
        except (ConnectionResetError, BrokenPipeError):
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


class StreamResult:
    def __init__(self):
        self.headers = None
        self.trailers = None
        self.data = b""
        self.ended = False
        self.reset_code = None

    @property
    def done(self):
        return self.ended or self.reset_code is not None

    def grpc_status(self):
        for src in (self.trailers, self.headers):
            for k, v in src or ():
                if k == "grpc-status":
                    return int(v)
        return None

    def grpc_message(self):
        for src in (self.trailers, self.headers):
            for k, v in src or ():
                if k == "grpc-message":
                    return v
        return None


class RawH2:
    """One client HTTP/2 connection over a unix socket."""

    def __init__(self, sock_path, timeout=5.0):
        self.sock = unix_connect(sock_path, timeout)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.streams = {}
        self.terminated = None  # ConnectionTerminated event, if any
        self.closed = False
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start_call(self, path, extra_headers=()):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = StreamResult()
        self.conn.send_headers(sid, grpc_headers(path, extra_headers), end_stream=False)
        self.flush()
        return sid

    def send(self, sid, data, end_stream=False):
        # Respect the peer's flow-control window in chunks.
        view = memoryview(data)
        while len(view):
            n = min(len(view), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            if n <= 0:
                self.pump(0.5)
                continue
            self.conn.send_data(sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
        if end_stream:
            self.conn.end_stream(sid)
            self.flush()

    def call(self, path, message, extra_headers=()):
        sid = self.start_call(path, extra_headers)
        self.send(sid, grpc_frame(message), end_stream=True)
        return sid

    def pump(self, timeout):
        """Reads and handles whatever arrives within timeout; False on EOF."""
        if self.closed:
            return False
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived) and st:
                st.headers = ev.headers
            elif isinstance(ev, h2.events.TrailersReceived) and st:
                st.trailers = ev.headers
            elif isinstance(ev, h2.events.DataReceived) and st:
                st.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and st:
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset) and st:
                st.reset_code = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def wait(self, sid, timeout=5.0):
        """Waits until stream sid ends or is reset, or timeout; returns it."""
        deadline = time.monotonic() + timeout
        st = self.streams[sid]
        while not st.done and time.monotonic() < deadline:
            if not self.pump(deadline - time.monotonic()):
                break
        return st

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
