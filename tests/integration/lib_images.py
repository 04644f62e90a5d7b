"""Real test images and a real registry for the integration tests.

Images are built at test time from Debian's busybox-static with umoci and
pushed with skopeo to Debian's docker-registry listening on 127.0.0.1 (plain
HTTP, TLS with a CA made here, htpasswd Basic auth, or Bearer tokens from the
small token server below).  Nothing here talks to any other address.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "sleep", "true", "false", "id", "env",
           "hostname", "ps", "mount", "wc", "head", "touch", "mkdir", "rm"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


# ---- images ------------------------------------------------------------------

class Layout:
    """An OCI image layout built with umoci.  Each add_layer() unpacks the
    tag, lets the caller change the root filesystem and repacks it, so umoci
    computes the diff (deleted files become whiteouts)."""

    def __init__(self, path):
        self.path = path
        if not os.path.exists(os.path.join(path, "oci-layout")):
            run("umoci", "init", "--layout", path)

    def ref(self, tag):
        return f"{self.path}:{tag}"

    def new(self, tag, arch="amd64", variant=None):
        run("umoci", "new", "--image", self.ref(tag))
        self.config(tag, "--architecture", arch, "--os", "linux")
        if variant:
            self._set_variant(tag, variant)

    def add_layer(self, tag, change):
        bundle = self.path + ".bundle"
        shutil.rmtree(bundle, ignore_errors=True)
        run("umoci", "unpack", "--image", self.ref(tag), bundle)
        change(os.path.join(bundle, "rootfs"))
        run("umoci", "repack", "--image", self.ref(tag), bundle)
        shutil.rmtree(bundle, ignore_errors=True)

    def add_raw_layer(self, tag, entries):
        """Adds a layer verbatim from (name, data-or-None-for-dir) pairs, so
        special entries (an opaque-directory marker) appear exactly."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.mtime = 1700000000
                if data is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(info)
                else:
                    info.size, info.mode = len(data), 0o644
                    tf.addfile(info, io.BytesIO(data))
        path = self.path + ".layer.tar"
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        run("umoci", "raw", "add-layer", "--image", self.ref(tag), path)
        os.unlink(path)

    def config(self, tag, *args):
        run("umoci", "config", "--image", self.ref(tag), *args)

    # The layout's JSON, read and rewritten directly where umoci has no flag.
    def blob(self, digest):
        with open(os.path.join(self.path, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
            return f.read()

    def put_blob(self, data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest

    def index(self):
        with open(os.path.join(self.path, "index.json")) as f:
            return json.load(f)

    def write_index(self, index):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(index, f)

    def descriptor(self, tag):
        for d in self.index()["manifests"]:
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return d
        raise KeyError(tag)

    def _set_variant(self, tag, variant):
        desc = self.descriptor(tag)
        manifest = json.loads(self.blob(desc["digest"]))
        config = json.loads(self.blob(manifest["config"]["digest"]))
        config["variant"] = variant
        data = json.dumps(config).encode()
        manifest["config"].update(digest=self.put_blob(data), size=len(data))
        mdata = json.dumps(manifest).encode()
        idx = self.index()
        for d in idx["manifests"]:
            if d["digest"] == desc["digest"]:
                d.update(digest=self.put_blob(mdata), size=len(mdata))
        self.write_index(idx)

    def make_index(self, tag, platform_tags):
        """Writes an image index over existing tags: [(tag, platform dict)]."""
        manifests = []
        for t, platform in platform_tags:
            d = dict(self.descriptor(t))
            d.pop("annotations", None)
            d["platform"] = platform
            manifests.append(d)
        data = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": manifests}).encode()
        idx = self.index()
        idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                                 "digest": self.put_blob(data), "size": len(data),
                                 "annotations": {"org.opencontainers.image.ref.name": tag}})
        self.write_index(idx)


def busybox_root(rootfs, applets=APPLETS):
    os.makedirs(os.path.join(rootfs, "bin"), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
    for a in applets:
        link = os.path.join(rootfs, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    for d in ("etc", "tmp", "proc", "sys", "dev"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
                "app:x:1000:1000:app:/home/app:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")


def build_busybox(layout, tag, arch="amd64", variant=None, cmd=("/bin/sh",), user=None):
    layout.new(tag, arch, variant)
    layout.add_layer(tag, busybox_root)
    args = []
    for c in cmd:
        args += ["--config.cmd", c]
    if user:
        args += ["--config.user", user]
    layout.config(tag, *args)


def build_layered(layout, tag):
    """Several layers: a file deleted by a later layer (whiteout), an opaque
    directory (only the upper layer's content visible), and plain files."""
    build_busybox(layout, tag)

    def first(root):
        os.makedirs(os.path.join(root, "data", "old"), exist_ok=True)
        for name in ("keep", "gone"):
            with open(os.path.join(root, "data", name), "w") as f:
                f.write(name + "\n")
        with open(os.path.join(root, "data", "old", "hidden"), "w") as f:
            f.write("hidden\n")
    layout.add_layer(tag, first)
    layout.add_layer(tag, lambda root: os.unlink(os.path.join(root, "data", "gone")))
    layout.add_raw_layer(tag, [("data/old/", None), ("data/old/.wh..wh..opq", b""),
                               ("data/old/new", b"new\n")])


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage under tmp.
    tls: serve HTTPS with a certificate from a CA made here (self.ca);
    cert_sans: its subjectAltName list (make_certs; default IP and DNS).
    htpasswd: (user, password) for Basic auth.  token: a TokenServer."""

    def __init__(self, tmp, tls=False, htpasswd=None, token=None, cert_sans=None):
        self.tmp = tmp
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.ca = None
        os.makedirs(tmp, exist_ok=True)
        cfg = [
            "version: 0.1",
            "log:", "  level: warn",
            "storage:", "  delete:", "    enabled: true", "  filesystem:",
            f"    rootdirectory: {tmp}/data",
            "http:", f"  addr: 127.0.0.1:{self.port}",
        ]
        if tls:
            self.ca, cert, key = make_certs(tmp, "127.0.0.1", sans=cert_sans)
            cfg += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if htpasswd:
            pw = run("htpasswd", "-Bbn", htpasswd[0], htpasswd[1]).stdout.strip()
            with open(f"{tmp}/htpasswd", "w") as f:
                f.write(pw + "\n")
            cfg += ["auth:", "  htpasswd:", "    realm: test", f"    path: {tmp}/htpasswd"]
        if token:
            cfg += ["auth:", "  token:", f"    realm: {token.url}/token",
                    "    service: test-registry", "    issuer: test-issuer",
                    f"    rootcertbundle: {token.cert}"]
        with open(f"{tmp}/config.yml", "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.log = open(f"{tmp}/registry.log", "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", f"{tmp}/config.yml"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start: " + open(f"{tmp}/registry.log").read())

    def push(self, layout, tag, repo, rtag=None, fmt=None, compress=None, creds=None,
             all_images=False):
        args = ["skopeo", "copy", "--quiet"]
        args += ["--dest-cert-dir", os.path.dirname(self.ca)] if self.ca else \
                ["--dest-tls-verify=false"]
        if fmt:
            args += ["--format", fmt]
        if compress:
            args += ["--dest-compress-format", compress]
        if creds:
            args += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
        if all_images:
            args += ["--all"]
        ref = f"{self.host}/{repo}:{rtag or tag}"
        try:
            run(*args, f"oci:{layout.path}:{tag}", f"docker://{ref}", timeout=300)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"skopeo push {ref}: {e.stderr}") from None
        return ref

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def make_certs(tmp, ip, sans=None):
    """A CA and a server certificate for ip, made with openssl.  sans: the
    subjectAltName value (default "IP:<ip>,DNS:localhost"; "IP:<ip>" alone
    for an IP-only certificate).  The subject CN is always "test registry",
    so a client can only match the host through a SAN."""
    d = os.path.join(tmp, "certs")
    os.makedirs(d, exist_ok=True)
    ca, cakey = f"{d}/ca.crt", f"{d}/ca.key"
    cert, key, csr = f"{d}/server.crt", f"{d}/server.key", f"{d}/server.csr"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=picocri test CA", "-keyout", cakey, "-out", ca)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test registry",
        "-keyout", key, "-out", csr)
    ext = f"{d}/ext.cnf"
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % (sans or f"IP:{ip},DNS:localhost"))
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
    # The CA alone in its own directory: clients given a certificate directory
    # (skopeo --dest-cert-dir) read every *.crt there as a CA.
    os.makedirs(f"{d}/ca", exist_ok=True)
    shutil.copy(ca, f"{d}/ca/ca.crt")
    return f"{d}/ca/ca.crt", cert, key


# ---- the token server ----------------------------------------------------------

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry Bearer tokens (RS256 JWTs signed with openssl) for the
    token flow: GET /token?service=..&scope=.. with optional Basic credentials.
    Counts the requests it answered, so tests can check token caching."""

    def __init__(self, tmp, users=None, anonymous_pull=True):
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        self.key, self.cert = f"{tmp}/token.key", f"{tmp}/token.crt"
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=token-issuer", "-keyout", self.key, "-out", self.cert)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True, timeout=30).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users or {}
        self.anonymous_pull = anonymous_pull
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests += 1
                body, code = server.answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path, authorization):
        from urllib.parse import parse_qs, urlparse
        q = parse_qs(urlparse(path).query)
        user = None
        if authorization and authorization.startswith("Basic "):
            u, _, p = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(u) != p:
                return {"errors": [{"code": "UNAUTHORIZED"}]}, 401
            user = u
        access = []
        for scope in q.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if user or (a == "pull" and self.anonymous_pull)]
            access.append({"type": kind, "name": name, "actions": allowed})
        return {"token": self.sign(q.get("service", [""])[0], user or "", access),
                "expires_in": 300, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, 200

    def sign(self, service, subject, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": "test-issuer", "sub": subject, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input, check=True, capture_output=True).stdout
        return signing_input.decode() + "." + _b64url(sig)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def registry_get(registry, path, accept=None):
    """A plain GET against a plain-HTTP registry (for checks in tests)."""
    req = urllib.request.Request(f"http://{registry.host}{path}")
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read(), dict(r.headers)
