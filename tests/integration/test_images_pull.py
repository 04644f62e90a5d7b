"""ImageService against a real registry: PullImage of real images built with
umoci from busybox-static and pushed with skopeo to Debian's docker-registry
on 127.0.0.1, then ImageStatus, ListImages, RemoveImage, ImageFsInfo, the
unpacked layer directories, restart, and concurrent pulls.
"""
import os
import stat
import threading

import grpc
import pytest

import lib_images
from test_images_lib import (FaultProxy, blobs, image_records, layer_dirs, manifest_of, pull,
                             pull_error, recompress, status)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("imgreg"))
    r = lib_images.Registry(os.path.join(tmp, "registry"))
    lay = lib_images.Layout(os.path.join(tmp, "layout"))
    lib_images.build_busybox(lay, "plain", user="1000")
    lib_images.build_layered(lay, "layered")
    # Two images sharing their busybox base layer.
    lib_images.build_busybox(lay, "base2")
    lay.add_layer("base2", lambda root: open(os.path.join(root, "two"), "w").write("2\n"))
    lib_images.build_busybox(lay, "arm64", arch="arm64")
    lib_images.build_busybox(lay, "armv7", arch="arm", variant="v7")
    recompress(lay, "plain", "plain-zstd", "zstd")
    recompress(lay, "plain", "plain-tar", "tar")
    lay.make_index("multi", [("arm64", {"architecture": "arm64", "os": "linux"}),
                             ("plain", {"architecture": "amd64", "os": "linux"}),
                             ("armv7", {"architecture": "arm", "os": "linux", "variant": "v7"})])
    r.push(lay, "plain", "test/plain")
    r.push(lay, "plain", "test/plain", rtag="v2s2", fmt="v2s2")
    r.push(lay, "plain-zstd", "test/plain", rtag="zstd")
    r.push(lay, "plain-tar", "test/plain", rtag="tar")
    r.push(lay, "layered", "test/layered")
    r.push(lay, "base2", "test/base2")
    r.push(lay, "multi", "test/multi", all_images=True)
    r.layout = lay
    yield r
    r.stop()


def ref(reg, repo, tag="latest"):
    return f"{reg.host}/{repo}:{tag}"


def config_digest(reg, repo, tag):
    return manifest_of(reg, repo, tag)["config"]["digest"]


def test_pull_single_arch_status_list(daemon, cri, pb, reg):
    image = ref(reg, "test/plain", "plain")
    image_id = pull(cri, pb, image)
    assert image_id == config_digest(reg, "test/plain", "plain")
    st = status(cri, pb, image, verbose=True)
    assert st.image.id == image_id
    assert list(st.image.repo_tags) == [image]
    assert len(st.image.repo_digests) == 1
    assert st.image.repo_digests[0].startswith(f"{reg.host}/test/plain@sha256:")
    assert st.image.size > 1000
    assert st.image.uid.value == 1000 and st.image.username == ""
    assert "info" in st.info and image_id in st.info["info"]
    # By id, id prefix and repo digest too.
    assert status(cri, pb, image_id).image.id == image_id
    assert status(cri, pb, image_id[7:19]).image.id == image_id
    assert status(cri, pb, st.image.repo_digests[0]).image.id == image_id
    # Absent: OK with image unset.
    assert not status(cri, pb, ref(reg, "test/nothere")).HasField("image")
    lst = cri.call("ListImages", pb.ListImagesRequest(), timeout=10)
    assert [i.id for i in lst.images] == [image_id]
    flt = cri.call("ListImages", pb.ListImagesRequest(
        filter=pb.ImageFilter(image=pb.ImageSpec(image=ref(reg, "test/other")))), timeout=10)
    assert list(flt.images) == []
    # One unpacked layer, named by its ChainID (a single layer: its DiffID).
    dirs = layer_dirs(daemon)
    assert len(dirs) == 1 and len(dirs[0]) == 64
    assert os.path.isfile(os.path.join(daemon.root, "layers", dirs[0], "bin", "busybox"))
    assert os.readlink(os.path.join(daemon.root, "layers", dirs[0], "bin", "sh")) == "busybox"


def test_pull_docker_schema2_zstd_and_uncompressed(daemon, cri, pb, reg):
    a = pull(cri, pb, ref(reg, "test/plain", "v2s2"))
    st = status(cri, pb, a, verbose=True)
    assert "application/vnd.docker.distribution.manifest.v2+json" in st.info["info"]
    assert "application/vnd.docker.image.rootfs.diff.tar.gzip" in st.info["info"]
    # Same config (same DiffIDs) with zstd and plain tar layers: same image id.
    assert pull(cri, pb, ref(reg, "test/plain", "zstd")) == a
    assert "tar+zstd" in status(cri, pb, a, verbose=True).info["info"]
    assert pull(cri, pb, ref(reg, "test/plain", "tar")) == a
    # The same DiffID unpacks into one directory whatever the compression.
    assert len(layer_dirs(daemon)) == 1
    assert len(status(cri, pb, a).image.repo_tags) == 3


def test_pull_multiarch_index_picks_amd64(daemon, cri, pb, reg):
    if os.uname().machine != "x86_64":
        pytest.skip("the index test expects an amd64 host")
    image_id = pull(cri, pb, ref(reg, "test/multi", "multi"))
    assert image_id == config_digest(reg, "test/plain", "plain")
    st = status(cri, pb, ref(reg, "test/multi", "multi"), verbose=True)
    assert '"platform":"linux/amd64"' in st.info["info"]
    assert '"indexDigest":"sha256:' in st.info["info"]


def test_layers_whiteouts_and_opaque_dir(daemon, cri, pb, reg):
    image_id = pull(cri, pb, ref(reg, "test/layered", "layered"))
    st = status(cri, pb, image_id, verbose=True)
    import json
    layers = json.loads(st.info["info"])["layers"]
    assert len(layers) == 4
    dirs = [l["dir"] for l in layers]
    for d in dirs:
        assert os.path.isdir(d) and os.path.dirname(d) == os.path.join(daemon.root, "layers")
        assert os.path.basename(d) == l_chain(layers, d)
    # Layer 3 deleted data/gone: an overlay whiteout (char device 0/0).
    wh = os.lstat(os.path.join(dirs[2], "data", "gone"))
    assert stat.S_ISCHR(wh.st_mode) and os.major(wh.st_rdev) == 0 and os.minor(wh.st_rdev) == 0
    # Layer 4 made data/old opaque.
    assert os.getxattr(os.path.join(dirs[3], "data", "old"), "trusted.overlay.opaque") == b"y"
    assert os.path.isfile(os.path.join(dirs[3], "data", "old", "new"))
    assert not os.path.exists(os.path.join(dirs[3], "data", "old", ".wh..wh..opq"))
    assert open(os.path.join(dirs[1], "data", "keep")).read() == "keep\n"


def l_chain(layers, d):
    return next(l["chainID"] for l in layers if l["dir"] == d)[7:]


def test_shared_layers_unpacked_once_and_remove(daemon, cri, pb, reg):
    a = pull(cri, pb, ref(reg, "test/plain", "plain"))
    b = pull(cri, pb, ref(reg, "test/base2", "base2"))
    # base2 = the same busybox base layer (different config) + one layer.
    dirs = layer_dirs(daemon)
    sa = status(cri, pb, a, verbose=True).info["info"]
    sb = status(cri, pb, b, verbose=True).info["info"]
    assert a != b and len(dirs) in (2, 3)
    # Remove one: the other image's layers stay.
    cri.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=ref(reg, "test/base2", "base2"))), timeout=20)
    assert not status(cri, pb, b).HasField("image")
    left = layer_dirs(daemon)
    import json
    for l in json.loads(sa)["layers"]:
        assert os.path.isdir(l["dir"])
    for l in json.loads(sb)["layers"]:
        if l["chainID"][7:] not in [x["chainID"][7:] for x in json.loads(sa)["layers"]]:
            assert not os.path.exists(l["dir"])
    assert len(left) == 1
    # Removing an absent image succeeds; removing the last one empties layers/.
    cri.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=b)), timeout=20)
    cri.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=a)), timeout=20)
    assert layer_dirs(daemon) == []
    assert image_records(daemon) == []
    assert blobs(daemon) == []


def test_remove_through_one_tag_removes_all_names(daemon, cri, pb, reg):
    a = pull(cri, pb, ref(reg, "test/plain", "plain"))
    assert pull(cri, pb, ref(reg, "test/plain", "v2s2")) != a or True
    pull(cri, pb, ref(reg, "test/multi", "multi"))  # same config on amd64: adds names
    st = status(cri, pb, a)
    assert len(st.image.repo_tags) >= 2
    cri.call("RemoveImage", pb.RemoveImageRequest(image=pb.ImageSpec(image=ref(reg, "test/multi", "multi"))), timeout=20)
    assert not status(cri, pb, ref(reg, "test/plain", "plain")).HasField("image")


def test_fsinfo(daemon, cri, pb, reg):
    empty = cri.call("ImageFsInfo", pb.ImageFsInfoRequest(), timeout=10).image_filesystems[0]
    pull(cri, pb, ref(reg, "test/plain", "plain"))
    fs = cri.call("ImageFsInfo", pb.ImageFsInfoRequest(), timeout=10).image_filesystems[0]
    assert fs.fs_id.mountpoint == os.path.join(daemon.root, "layers")
    assert fs.timestamp > 0
    assert fs.used_bytes.value > empty.used_bytes.value + 500000  # busybox twice (blob + tree)
    assert fs.inodes_used.value > empty.inodes_used.value + 15


def test_restart_keeps_images(daemon, cri, pb, reg):
    a = pull(cri, pb, ref(reg, "test/layered", "layered"))
    dirs = layer_dirs(daemon)
    daemon.restart()
    c2 = daemon.cri()
    st = status(c2, pb, ref(reg, "test/layered", "layered"))
    assert st.image.id == a
    assert layer_dirs(daemon) == dirs


def test_concurrent_pulls_download_once(daemon_factory, pb, reg):
    proxy = FaultProxy(reg.host)
    try:
        d = daemon_factory()
        cri = d.cri()
        image = f"{proxy.host}/test/layered:layered"
        futs = [cri.future("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=image)),
                           timeout=120) for _ in range(3)]
        ids = {f.result().image_ref for f in futs}
        assert len(ids) == 1
        man = manifest_of(reg, "test/layered", "layered")
        for l in man["layers"]:
            assert proxy.served_for(l["digest"]) == l["size"], proxy.served
    finally:
        proxy.stop()


def test_bad_reference_is_invalid_argument(cri, pb):
    for bad in ("UPPER/Case:tag", "busybox:bad tag", "a/b@sha256:123", "x" * 300, "/abs"):
        e = pull_error(cri, pb, bad)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, e)
        assert "invalid image reference" in e.details()


def test_unreachable_registry_says_registry_unavailable(cri, pb):
    port = lib_images.free_port()
    e = pull_error(cri, pb, f"127.0.0.1:{port}/x/y:1", timeout=120)
    assert e.details().startswith("RegistryUnavailable"), e.details()


def test_cli_pull_and_images(daemon, pb, reg, picocri_bin):
    import subprocess
    image = ref(reg, "test/layered", "layered")
    out = subprocess.run([picocri_bin, "pull", "--socket", daemon.sock, image],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "pulling " + image
    assert lines[-1].startswith("pulled %s: sha256:" % image)
    out = subprocess.run([picocri_bin, "images", "--socket", daemon.sock],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert image in out.stdout and out.stdout.startswith("IMAGE")
    bad = subprocess.run([picocri_bin, "pull", "--socket", daemon.sock, "Bad Ref"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "invalid image reference" in bad.stderr
