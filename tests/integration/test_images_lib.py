"""Helpers shared by the image integration tests (test_images_*.py): a
module-wide registry with test images, a fault-injecting HTTP proxy that
counts the bytes it serves, and small CRI shortcuts.

What: `FaultProxy` sits between picocri and Debian's docker-registry on
127.0.0.1 and, per request path, can drop the connection after N body bytes,
corrupt the body, or replace it; it counts body bytes served per path.
`pull()`, `status()`, `layer_dirs()`, `store_files()` wrap the CRI calls and
the daemon's directories.

Why: the bad-input tests must prove *what* was fetched (resume fetches only
the rest) and that nothing half-written is left behind.

Invariants: servers listen on 127.0.0.1 only; every wait is bounded.
"""
import hashlib
import http.client
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

import lib_images


class FaultProxy:
    """A plain-HTTP proxy to `upstream` ("127.0.0.1:port").

    faults: {regex on path: dict(drop_after=N | corrupt=True | body=b"..",
    content_type=.., rate=bytes per second, times=K)}; a fault applies to
    the first K matching requests (default: all).  With rate the body is sent
    in 16 KiB pieces at that speed (served counts as it goes) until the
    client goes away.  served[path] sums the body bytes sent,
    requests[path] counts requests, ranges lists the Range headers seen."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.faults = {}
        self.served = {}
        self.requests = {}
        self.ranges = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.forward(head=True)

            def do_GET(self):
                self.forward(head=False)

            def forward(self, head):
                fault = proxy.take_fault(self.path)
                with proxy.lock:
                    proxy.requests[self.path] = proxy.requests.get(self.path, 0) + 1
                    if self.headers.get("Range"):
                        proxy.ranges.append((self.path, self.headers.get("Range")))
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection")}
                conn.request("HEAD" if head else "GET", self.path, headers=hdrs)
                r = conn.getresponse()
                body = b"" if head else r.read()
                conn.close()
                if fault and "body" in fault:
                    body = fault["body"]
                if fault and fault.get("corrupt") and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() in ("content-length", "connection", "transfer-encoding"):
                        continue
                    if fault and "content_type" in fault and k.lower() == "content-type":
                        v = fault["content_type"]
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                n = len(body)
                if fault and "drop_after" in fault:
                    n = min(n, fault["drop_after"])
                if fault and "rate" in fault:
                    self.send_slowly(body[:n], fault["rate"])
                    return
                self.wfile.write(body[:n])
                self.wfile.flush()
                with proxy.lock:
                    proxy.served[self.path] = proxy.served.get(self.path, 0) + n
                if n < len(body):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass

            def send_slowly(self, body, rate):
                piece = 16384
                for off in range(0, len(body), piece):
                    try:
                        self.wfile.write(body[off:off + piece])
                        self.wfile.flush()
                    except OSError:
                        self.close_connection = True
                        return
                    with proxy.lock:
                        proxy.served[self.path] = proxy.served.get(self.path, 0) + \
                            len(body[off:off + piece])
                    time.sleep(piece / rate)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = "127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take_fault(self, path):
        with self.lock:
            for pat, f in self.faults.items():
                if re.search(pat, path):
                    if f.get("times", 1 << 30) <= 0:
                        continue
                    f["times"] = f.get("times", 1 << 30) - 1
                    return f
        return None

    def served_for(self, digest):
        with self.lock:
            return sum(v for k, v in self.served.items() if digest in k)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pull(cri, pb, image, auth=None, timeout=120):
    req = pb.PullImageRequest(image=pb.ImageSpec(image=image))
    if auth:
        req.auth.CopyFrom(pb.AuthConfig(**auth))
    return cri.call("PullImage", req, timeout=timeout).image_ref


def pull_error(cri, pb, image, auth=None, timeout=120):
    try:
        ref = pull(cri, pb, image, auth, timeout)
    except grpc.RpcError as e:
        return e
    raise AssertionError("pull of %s succeeded (%s), expected an error" % (image, ref))


def status(cri, pb, image, verbose=False):
    return cri.call("ImageStatus", pb.ImageStatusRequest(
        image=pb.ImageSpec(image=image), verbose=verbose), timeout=20)


def layer_dirs(daemon):
    d = os.path.join(daemon.root, "layers")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def image_records(daemon):
    d = os.path.join(daemon.root, "meta", "k8s.io", "images")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def blobs(daemon):
    d = os.path.join(daemon.root, "content", "blobs", "sha256")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def assert_clean(daemon):
    """Nothing half-written: no record, no layer directory (complete or
    temporary), no published blob that is not verified content."""
    assert image_records(daemon) == []
    assert layer_dirs(daemon) == [], layer_dirs(daemon)
    for b in blobs(daemon):
        with open(os.path.join(daemon.root, "content", "blobs", "sha256", b), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == b


def manifest_of(registry, repo, tag):
    body, _ = lib_images.registry_get(
        registry, f"/v2/{repo}/manifests/{tag}",
        accept="application/vnd.oci.image.manifest.v1+json,"
               "application/vnd.docker.distribution.manifest.v2+json")
    return json.loads(body)


def recompress(layout, src_tag, new_tag, mode):
    """Writes new_tag into the layout: src_tag's image with every layer
    re-encoded as zstd ("zstd", with the zstd CLI) or left uncompressed
    ("tar").  The config (DiffIDs) stays, so the image id does not change."""
    import gzip
    import subprocess
    desc = layout.descriptor(src_tag)
    man = json.loads(layout.blob(desc["digest"]))
    for l in man["layers"]:
        raw = gzip.decompress(layout.blob(l["digest"]))
        if mode == "zstd":
            data = subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, check=True,
                                  capture_output=True, timeout=60).stdout
            l["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            data = raw
            l["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
        l["digest"], l["size"] = layout.put_blob(data), len(data)
    mdata = json.dumps(man).encode()
    idx = layout.index()
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                             "digest": layout.put_blob(mdata), "size": len(mdata),
                             "annotations": {"org.opencontainers.image.ref.name": new_tag}})
    layout.write_index(idx)


def registries_yaml(daemon, text):
    path = os.path.join(daemon.workdir, "registries.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path
