"""PullImage under hostile or broken registries, and the auth/TLS/mirror
configurations: each bad case must end with a clear gRPC error, leave no
record, no layer directory (complete or temporary) and no unverified blob,
touch nothing outside the daemon's root, and leave the daemon serving.

A FaultProxy (test_images_lib) in front of Debian's docker-registry drops
connections mid-blob, corrupts blobs and replaces manifests, and counts the
body bytes it served, so the resume test proves only the rest was fetched.
"""
import io
import os
import subprocess
import tarfile
import time

import grpc
import pytest

import lib_images
from test_bad_input import assert_alive
from test_images_lib import (FaultProxy, assert_clean, blobs, layer_dirs, manifest_of, pull,
                             pull_error, registries_yaml, status)


def raw_layer_image(layout, tag, members):
    """busybox base + one raw layer from tarfile members [(TarInfo, data)]."""
    lib_images.build_busybox(layout, tag)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    path = layout.path + ".evil.tar"
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    lib_images.run("umoci", "raw", "add-layer", "--image", layout.ref(tag), path)
    os.unlink(path)


def ti(name, kind=tarfile.REGTYPE, size=0, link=""):
    t = tarfile.TarInfo(name)
    t.type, t.size, t.linkname, t.mode, t.mtime = kind, size, link, 0o644, 1700000000
    return t


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("imgbad"))
    r = lib_images.Registry(os.path.join(tmp, "registry"))
    lay = lib_images.Layout(os.path.join(tmp, "layout"))
    lib_images.build_busybox(lay, "plain")
    # One big incompressible layer so a drop mid-blob is mid-blob.
    lay.add_layer("plain", lambda root: open(os.path.join(root, "big"), "wb").write(os.urandom(4 << 20)))
    raw_layer_image(lay, "dotdot", [(ti("../../escaped", size=2), b"x\n")])
    raw_layer_image(lay, "abslink", [(ti("evil", tarfile.SYMTYPE, link="/tmp"), None),
                                     (ti("evil/picocri-escaped", size=2), b"x\n")])
    raw_layer_image(lay, "shadow", [(ti("shadow", tarfile.LNKTYPE, link="/etc/shadow"), None)])
    raw_layer_image(lay, "bomb", [(ti("zeros", size=8 << 20), bytes(8 << 20))])
    for tag in ("plain", "dotdot", "abslink", "shadow", "bomb"):
        r.push(lay, tag, "bad/" + tag, rtag="1")
    yield r
    r.stop()


@pytest.fixture
def proxy(reg):
    p = FaultProxy(reg.host)
    yield p
    p.stop()


def big_layer(reg, repo):
    man = manifest_of(reg, repo, "1")
    return max(man["layers"], key=lambda l: l["size"])


def test_drop_mid_blob_resumes_with_only_the_rest(daemon, cri, pb, reg, proxy):
    layer = big_layer(reg, "bad/plain")
    proxy.faults[layer["digest"]] = {"drop_after": layer["size"] // 2, "times": 1}
    image_id = pull(cri, pb, f"{proxy.host}/bad/plain:1")
    assert image_id == manifest_of(reg, "bad/plain", "1")["config"]["digest"]
    served = proxy.served_for(layer["digest"])
    # Half, then the rest: the whole blob once, never twice.
    assert served == layer["size"], (served, layer["size"])
    assert any(layer["digest"] in p and r.startswith("bytes=%d-" % (layer["size"] // 2))
               for p, r in proxy.ranges), proxy.ranges


def partial_size(daemon, digest):
    path = os.path.join(daemon.root, "content", "ingest", digest[7:] + ".partial")
    return os.path.getsize(path) if os.path.exists(path) else None


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_client_cancel_mid_blob_stops_and_resumes(daemon, cri, pb, reg, proxy):
    layer = big_layer(reg, "bad/plain")
    digest, size = layer["digest"], layer["size"]
    # 256 KiB/s: the 4 MiB layer would take 16 s.
    proxy.faults[digest] = {"rate": 256 << 10}
    req = pb.PullImageRequest(image=pb.ImageSpec(image=f"{proxy.host}/bad/plain:1"))
    fut = cri.future("PullImage", req, timeout=120)
    wait_for(lambda: proxy.served_for(digest) >= 512 << 10, 30, "half a MiB served")
    assert fut.cancel()
    # The download stops: the proxy's writes fail once the daemon closed the
    # connection, so the bytes served stop growing well before the end.
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.5:
        now = proxy.served_for(digest)
        if now != last:
            last, stable_since = now, time.monotonic()
        time.sleep(0.1)
    assert time.monotonic() - stable_since >= 1.5, "download did not stop after the cancel"
    assert last < size, (last, size)
    # Nothing half-written is visible; the partial download stays.
    wait_for(lambda: partial_size(daemon, digest), 10, "the partial file")
    have = partial_size(daemon, digest)
    assert 0 < have < size, (have, size)
    assert_clean(daemon)
    assert_alive(daemon)
    # A later pull resumes from the partial file and fetches only the rest.
    proxy.faults.clear()
    before = proxy.served_for(digest)
    image_id = pull(cri, pb, f"{proxy.host}/bad/plain:1")
    assert image_id == manifest_of(reg, "bad/plain", "1")["config"]["digest"]
    assert proxy.served_for(digest) - before == size - have, (before, have, size)
    assert any(digest in p and r.startswith("bytes=%d-" % have) for p, r in proxy.ranges), \
        proxy.ranges
    assert digest[7:] in blobs(daemon)
    assert partial_size(daemon, digest) is None


def test_blob_digest_mismatch(daemon, cri, pb, reg, proxy):
    layer = big_layer(reg, "bad/plain")
    proxy.faults[layer["digest"]] = {"corrupt": True}
    e = pull_error(cri, pb, f"{proxy.host}/bad/plain:1")
    assert "digest" in e.details() or "sha256" in e.details(), e.details()
    assert layer["digest"][7:] not in blobs(daemon)
    # The corrupt download is not kept for a resume either.
    assert partial_size(daemon, layer["digest"]) is None
    assert_clean(daemon)
    assert_alive(daemon)


def test_manifest_not_json(daemon, cri, pb, reg, proxy):
    proxy.faults["/manifests/"] = {"body": b"this is not json {",
                                   "content_type": "application/vnd.oci.image.manifest.v1+json"}
    e = pull_error(cri, pb, f"{proxy.host}/bad/plain:1")
    assert e.code() != grpc.StatusCode.OK
    assert "manifest" in e.details() or "JSON" in e.details(), e.details()
    assert_clean(daemon)
    assert_alive(daemon)


@pytest.mark.parametrize("tag,outside", [
    ("dotdot", None),
    ("abslink", "/tmp/picocri-escaped"),
    ("shadow", None),
])
def test_escaping_layers_are_refused(daemon, cri, pb, reg, tag, outside):
    shadow = open("/etc/shadow", "rb").read() if os.path.exists("/etc/shadow") else None
    shadow_stat = os.stat("/etc/shadow") if shadow is not None else None
    e = pull_error(cri, pb, f"{reg.host}/bad/{tag}:1")
    assert e.code() != grpc.StatusCode.OK
    assert "layer" in e.details() or "unpack" in e.details(), e.details()
    assert_clean(daemon)
    if outside:
        assert not os.path.exists(outside)
    assert not os.path.exists(os.path.join(os.path.dirname(daemon.root), "escaped"))
    if shadow is not None:
        st = os.stat("/etc/shadow")
        assert open("/etc/shadow", "rb").read() == shadow
        assert st.st_nlink == shadow_stat.st_nlink
    assert_alive(daemon)


def test_decompression_bomb_limit(daemon_factory, pb, reg):
    # The 2 GiB default is lowered to 1 MiB for test speed (documented knob).
    d = daemon_factory(env={"PICOCRI_IMAGE_MAX_LAYER_BYTES": str(1 << 20)})
    cri = d.cri()
    e = pull_error(cri, pb, f"{reg.host}/bad/bomb:1")
    assert "more than" in e.details(), e.details()
    assert_clean(d)
    assert_alive(d)


@pytest.mark.parametrize("ref", [
    "reg.example/na$me:tag",
    "docker.io/library/BusyBox:1",
    "busybox:bad tag",
    "busybox:-leading-dash",
    "busybox@sha256:1234",
    "busybox:tag\n",
    "reg.example/a//b:1",
])
def test_invalid_characters_in_reference(daemon, cri, pb, ref):
    e = pull_error(cri, pb, ref)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (ref, e.code(), e.details())
    assert e.details(), ref
    assert_clean(daemon)
    assert os.listdir(os.path.join(daemon.root, "content", "ingest")) == []


# ---- auth, TLS, mirrors ---------------------------------------------------------------

@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    lay = lib_images.Layout(str(tmp_path_factory.mktemp("authlay") / "layout"))
    lib_images.build_busybox(lay, "plain")
    return lay


def start_with_registries(daemon_factory, text):
    d = daemon_factory(start=False)
    path = registries_yaml(d, text)
    d.extra_args += ["--registries", path]
    d.start()
    return d


def test_basic_auth_from_request_and_from_registries_yaml(daemon_factory, pb, layout, tmp_path):
    r = lib_images.Registry(str(tmp_path / "basic"), htpasswd=("alice", "s3cret"))
    try:
        r.push(layout, "plain", "auth/plain", creds=("alice", "s3cret"))
        d = daemon_factory()
        cri = d.cri()
        e = pull_error(cri, pb, f"{r.host}/auth/plain:plain")
        assert e.code() != grpc.StatusCode.OK
        assert_clean(d)
        assert pull(cri, pb, f"{r.host}/auth/plain:plain",
                    auth={"username": "alice", "password": "s3cret"}).startswith("sha256:")
        d2 = start_with_registries(daemon_factory, f"""configs:
  "{r.host}":
    auth:
      username: alice
      password: s3cret
""")
        assert pull(d2.cri(), pb, f"{r.host}/auth/plain:plain").startswith("sha256:")
    finally:
        r.stop()


def test_bearer_token_anonymous_and_with_credentials(daemon_factory, pb, layout, tmp_path):
    tok = lib_images.TokenServer(str(tmp_path / "tok"), users={"bob": "pw"}, anonymous_pull=True)
    r = lib_images.Registry(str(tmp_path / "bearer"), token=tok)
    try:
        r.push(layout, "plain", "tok/plain", creds=("bob", "pw"))
        d = daemon_factory()
        cri = d.cri()
        assert pull(cri, pb, f"{r.host}/tok/plain:plain").startswith("sha256:")
        tok.anonymous_pull = False
        cri.call("RemoveImage", pb.RemoveImageRequest(
            image=pb.ImageSpec(image=f"{r.host}/tok/plain:plain")), timeout=20)
        d2 = daemon_factory()
        c2 = d2.cri()
        e = pull_error(c2, pb, f"{r.host}/tok/plain:plain")
        assert e.code() != grpc.StatusCode.OK
        assert pull(c2, pb, f"{r.host}/tok/plain:plain",
                    auth={"username": "bob", "password": "pw"}).startswith("sha256:")
    finally:
        r.stop()
        tok.stop()


def test_tls_with_ca_from_registries_yaml(daemon_factory, pb, layout, tmp_path):
    r = lib_images.Registry(str(tmp_path / "tls"), tls=True)
    try:
        r.push(layout, "plain", "tls/plain")
        # The certificate names 127.0.0.1 as an IP SAN and localhost as a DNS
        # SAN; mbedTLS 2.28 matches DNS names only, so ask for localhost.
        host = f"localhost:{r.port}"
        d = start_with_registries(daemon_factory, f"""configs:
  "{host}":
    tls:
      ca_file: {r.ca}
""")
        cri = d.cri()
        assert pull(cri, pb, f"{host}/tls/plain:plain").startswith("sha256:")
        # Without the CA the same registry is refused.
        d2 = daemon_factory()
        e = pull_error(d2.cri(), pb, f"{host}/tls/plain:plain")
        assert "certificate" in e.details() or "tls" in e.details(), e.details()
    finally:
        r.stop()


def test_tls_to_ip_address_with_ip_only_certificate(daemon_factory, pb, layout, tmp_path):
    # The certificate's only name is the IP SAN 127.0.0.1 (CN is not a name):
    # mbedTLS 2.28 alone reports "CN does not match"; the IP SAN check in
    # img_tls.c must accept it, and only for that address.
    r = lib_images.Registry(str(tmp_path / "tlsip"), tls=True, cert_sans="IP:127.0.0.1")
    other = lib_images.Registry(str(tmp_path / "tlsip2"), tls=True, cert_sans="IP:127.0.0.2")
    try:
        r.push(layout, "plain", "tls/plain")
        cfg = "configs:\n"
        for reg in (r, other):
            cfg += f'  "{reg.host}":\n    tls:\n      ca_file: {reg.ca}\n'
        d = start_with_registries(daemon_factory, cfg)
        cri = d.cri()
        assert pull(cri, pb, f"{r.host}/tls/plain:plain").startswith("sha256:")
        # A certificate for another address is refused (name mismatch), even
        # though its CA is trusted.
        e = pull_error(cri, pb, f"{other.host}/tls/plain:plain")
        assert "CN" in e.details() or "certificate" in e.details(), e.details()
        # Without the CA the IP-addressed registry is refused.
        d2 = daemon_factory()
        e = pull_error(d2.cri(), pb, f"{r.host}/tls/plain:plain")
        assert "certificate" in e.details() or "tls" in e.details(), e.details()
        assert_clean(d2)
    finally:
        r.stop()
        other.stop()


def test_failing_mirror_falls_back_and_names_are_kept(daemon_factory, pb, layout, tmp_path):
    r = lib_images.Registry(str(tmp_path / "up"))
    dead = lib_images.free_port()
    try:
        r.push(layout, "plain", "library/busybox", rtag="1.36")
        # The image is asked for as docker.io/...; the first mirror is dead,
        # the second is our registry.
        d = start_with_registries(daemon_factory, f"""mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:{dead}"
      - "http://{r.host}"
""")
        cri = d.cri()
        image_id = pull(cri, pb, "busybox:1.36")
        st = status(cri, pb, "busybox:1.36")
        assert st.image.id == image_id
        assert list(st.image.repo_tags) == ["docker.io/library/busybox:1.36"]
        assert st.image.repo_digests[0].startswith("docker.io/library/busybox@sha256:")
        lst = cri.call("ListImages", pb.ListImagesRequest(), timeout=10)
        assert [list(i.repo_tags) for i in lst.images] == [["docker.io/library/busybox:1.36"]]
    finally:
        r.stop()
