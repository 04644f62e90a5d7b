#!/usr/bin/env python3
"""A small OCI registry for test_img_registry.c, with fault injection.

Serves GET /v2/<repo>/manifests/<ref> and /v2/<repo>/blobs/<digest> from
<root>/manifests/<ref> and <root>/blobs/<hex>.  The first path component
of the repository selects a behaviour:

  plain     normal (manifests with chunked encoding)
  drop      the first blob GET sends half the body, then closes
  norange   like drop, and Range is ignored afterwards (200, full body)
  bad       blob bytes are corrupted (digest mismatch)
  flaky     the first request of each path answers 503
  auth      requires "Bearer tok-<n>" issued by /token for Basic alice:secret
  authredir auth, and blobs redirect (307) to http://localhost:<port>/storage/
  slow      blobs are sent slowly (for cancellation)
  stall     the first blob GET sends half the body, then stalls for 3 s

POST /token accepts grant_type=refresh_token with refresh_token=idtok-1;
"Bearer static-tok" is always valid.  CONNECT host:port tunnels to
127.0.0.1:port (a forward proxy for HTTPS_PROXY/HTTP_PROXY tests).

Every request is appended to the stats file (JSON lines): path, range,
authorization, status, bytes of body sent.  Listens on 127.0.0.1 only; the
chosen port is written to --port-file.
"""
import argparse
import base64
import json
import os
import socketserver
import select
import socket
import ssl
import threading
import urllib.parse
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOCK = threading.Lock()
SEEN = {}
ACTIVE = {}  # repository -> [blob GETs in progress, most at once]
TOKENS = {"static-tok"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self, status, sent, extra=None):
        entry = {"path": self.path, "range": self.headers.get("Range", ""),
                 "auth": self.headers.get("Authorization", ""), "status": status,
                 "bytes": sent, "host": self.headers.get("Host", ""), "method": self.command,
                 "peer": self.client_address[1]}
        if extra:
            entry.update(extra)
        with LOCK:
            with open(self.server.stats, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def first_time(self, key):
        with LOCK:
            n = SEEN.get(key, 0)
            SEEN[key] = n + 1
        return n == 0

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.record(status, len(body))
        self.wfile.write(body)

    def error(self, status, code, msg, headers=()):
        self.send_json(status, {"errors": [{"code": code, "message": msg}]}, headers)

    def check_auth(self, repo):
        port = self.server.server_address[1]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in TOKENS:
            return True
        challenge = ('Bearer realm="http://127.0.0.1:%d/token",service="fake",'
                     'scope="repository:%s:pull"' % (port, repo))
        self.error(401, "UNAUTHORIZED", "authentication required",
                   [("WWW-Authenticate", challenge)])
        return False

    def do_GET(self):
        try:
            self.route()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        if (self.path.startswith("/token") and form.get("grant_type") == ["refresh_token"]
                and form.get("refresh_token") == ["idtok-1"] and form.get("scope")):
            with LOCK:
                tok = "tok-%d" % (len(TOKENS) + 1)
                TOKENS.add(tok)
            return self.send_json(200, {"access_token": tok, "expires_in": 300})
        self.send_json(401, {"details": "bad refresh token"})

    def do_CONNECT(self):
        host, port = self.path.rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        try:
            up = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        except OSError:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self.record(200, 0, {"connect": self.path})
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        socks = [self.connection, up]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 10)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is self.connection else self.connection).sendall(data)
        except OSError:
            pass
        finally:
            up.close()

    def route(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/token"):
            return self.token()
        if path.startswith("/storage/"):
            return self.blob(path[len("/storage/"):], "storage")
        parts = path.split("/")
        if len(parts) < 6 or parts[1] != "v2":
            return self.error(404, "NAME_UNKNOWN", "no such path")
        repo = "/".join(parts[2:-2])
        kind, ref = parts[-2], parts[-1]
        mode = parts[2]
        if mode == "flaky" and self.first_time(path):
            return self.error(503, "UNAVAILABLE", "try again")
        if mode in ("auth", "authredir") and not self.check_auth(repo):
            return
        if kind == "manifests":
            return self.manifest(ref)
        if kind == "blobs":
            if mode == "authredir":
                port = self.server.server_address[1]
                self.send_response(307)
                self.send_header("Location", "http://localhost:%d/storage/%s?sig=1" % (port, ref))
                self.send_header("Content-Length", "0")
                self.record(307, 0)
                return self.end_headers()
            return self.blob(ref, mode)
        return self.error(404, "NAME_UNKNOWN", "no such path")

    def token(self):
        auth = self.headers.get("Authorization", "")
        want = "Basic " + base64.b64encode(b"alice:secret").decode()
        if auth != want:
            return self.send_json(401, {"details": "bad credentials"})
        with LOCK:
            tok = "tok-%d" % (len(TOKENS) + 1)
            TOKENS.add(tok)
        self.send_json(200, {"token": tok, "expires_in": 300})

    def manifest(self, ref):
        name = ref.replace(":", "_")
        try:
            with open(os.path.join(self.server.root, "manifests", name), "rb") as f:
                body = f.read()
        except OSError:
            return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.record(200, len(body))
        for i in range(0, len(body), 100):
            piece = body[i:i + 100]
            self.wfile.write(b"%x;n=1\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")

    def blob(self, ref, mode):
        repo = "/".join(self.path.split("?")[0].split("/")[2:-2]) or mode
        hexd = ref.split(":", 1)[-1]
        try:
            with open(os.path.join(self.server.root, "blobs", hexd), "rb") as f:
                data = f.read()
        except OSError:
            return self.error(404, "BLOB_UNKNOWN", "blob unknown")
        with LOCK:
            act = ACTIVE.setdefault(repo, [0, 0])
            act[0] += 1
            act[1] = max(act[1], act[0])
        try:
            self.send_blob(ref, mode, data, act)
        finally:
            with LOCK:
                act[0] -= 1

    def send_blob(self, ref, mode, data, act):
        if mode == "bad":
            data = data[:-1] + bytes([data[-1] ^ 1])
        start, status = 0, 200
        rng = self.headers.get("Range", "")
        first = self.first_time("blob:" + mode + ":" + ref)
        if rng.startswith("bytes=") and mode != "norange":
            start = int(rng[6:].split("-")[0])
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Content-Digest", ref)
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if first and mode in ("drop", "norange", "stall"):
            half = len(body) // 2
            self.record(status, half, {"dropped": True, "max_active": act[1]})
            self.wfile.write(body[:half])
            self.wfile.flush()
            if mode == "stall":
                time.sleep(3)
            self.close_connection = True
            return
        self.record(status, len(body), {"max_active": act[1]})
        if mode == "slow":
            for i in range(0, len(body), 1024):
                self.wfile.write(body[i:i + 1024])
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.root, srv.stats = args.root, args.stats
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
