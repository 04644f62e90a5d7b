"""Pods and containers for the integration tests, the way a kubelet asks.

What: pod/container config builders with the io.kubernetes.* labels and
annotations a kubelet sets; a per-test environment (`PodEnv`) with its own
network namespace, CNI conflist (bridge + host-local + loopback + portmap
from /usr/lib/cni), a docker-registry serving the test images inside that
namespace, a pod log root and a cgroup parent; the runtime daemon started
inside the namespace (`nsenter --net=`, so it keeps the host's mount
namespace: its pins stay visible to the tests and to the next daemon); a
CRI client that turns UNIMPLEMENTED into a skip ("X not implemented yet");
bounded waits; the CRI log-format reader; and leak checks (mounts under the
daemon's dirs, leftover monitor/shim/pause processes, cgroups, host-local
leases, pod netns) run at teardown, followed by a forced cleanup.

Why: every pod test needs the same isolation and the same "nothing leaked"
check; the tests are written against the CRI contract only, so the same
tests run against containerd 1.6 (PICOCRI_IT_RUNTIME=containerd) to check
the tests themselves.

Invariants: everything made here (netns, bridge and veths inside it, mounts,
cgroups, host-local data, processes) is removed in a finalizer, also when the
test failed; only processes descending from daemons the test started are
signalled, by PID; every wait is bounded.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import grpc
import pytest

import cri_harness
import lib_images

RUNTIME = os.environ.get("PICOCRI_IT_RUNTIME", "picocri")
CNI_BIN = "/usr/lib/cni"
REG_PORT = 5000  # inside each test's own network namespace
BUSYBOX_REPO, PAUSE_REPO = "pt/busybox", "pt/pause"
IMAGE = "127.0.0.1:%d/%s:1" % (REG_PORT, BUSYBOX_REPO)
PAUSE_IMAGE = "127.0.0.1:%d/%s:1" % (REG_PORT, PAUSE_REPO)
MARK_PREFIX = "picotest-"

StatusCode = grpc.StatusCode


def rand_hex(n=8):
    return os.urandom((n + 1) // 2).hex()[:n]


def sh(*argv, check=True, timeout=60, **kw):
    return subprocess.run(argv, check=check, capture_output=True, text=True,
                          timeout=timeout, **kw)


def wait_for(fn, timeout, what, interval=0.1):
    """Calls fn() until it returns a true value (returned) or timeout s pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0fs waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


# ---- images --------------------------------------------------------------------

APPLETS = sorted(set(lib_images.APPLETS + [
    "ping", "nc", "wget", "httpd", "kill", "grep", "tail", "ip", "seq", "printf",
    "test", "tr", "dd", "date", "stat", "readlink", "awk", "yes", "sed", "ls",
    "cut", "hostname", "uname", "ifconfig", "route", "timeout", "usleep"]))


class ImageStore:
    """The test images, pushed once per session into a registry storage dir
    that per-test registries (inside each test's netns) serve read-mostly."""

    def __init__(self, tmp):
        self.tmp = tmp
        layout = lib_images.Layout(os.path.join(tmp, "layout"))
        layout.new("busybox")
        layout.add_layer("busybox", lambda r: lib_images.busybox_root(r, APPLETS))
        layout.config("busybox", "--config.cmd", "/bin/sh",
                      "--config.env", "PATH=/bin:/usr/bin")
        # The "pause" image for containerd: blocks forever, exits on SIGTERM
        # only by being killed (sleep ignores nothing; the runtime kills it).
        layout.new("pause")
        layout.add_layer("pause", lambda r: lib_images.busybox_root(r, ["sleep"]))
        layout.config("pause", "--config.entrypoint", "/bin/sleep",
                      "--config.cmd", "2147483647")
        self.layout = layout
        reg = lib_images.Registry(os.path.join(tmp, "reg"))
        try:
            reg.push(layout, "busybox", BUSYBOX_REPO, "1")
            reg.push(layout, "pause", PAUSE_REPO, "1")
        finally:
            reg.stop()
        self.data = os.path.join(tmp, "reg", "data")


class NetnsRegistry:
    """docker-registry on 127.0.0.1:REG_PORT inside netns, serving store.data."""

    def __init__(self, netns, store, tmp):
        os.makedirs(tmp, exist_ok=True)
        cfg = os.path.join(tmp, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n"
                    % (store.data, REG_PORT))
        self.log = open(os.path.join(tmp, "registry.log"), "w")
        self.proc = subprocess.Popen(
            ["nsenter", "--net=/run/netns/" + netns.name, "--", "docker-registry", "serve", cfg],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=cri_harness.die_with_parent)
        wait_for(lambda: self.proc.poll() is not None or netns.run(
            "curl", "-sf", "-m", "3", "-o", "/dev/null",
            "http://127.0.0.1:%d/v2/" % REG_PORT, check=False, timeout=10).returncode == 0,
            20, "registry in netns")
        if self.proc.poll() is not None:
            raise RuntimeError("docker-registry exited: " + open(self.log.name).read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# ---- network namespace and CNI --------------------------------------------------

class Netns:
    def __init__(self):
        self.name = MARK_PREFIX + rand_hex(8)
        sh("ip", "netns", "add", self.name)
        sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def run(self, *argv, check=True, timeout=60):
        return sh("nsenter", "--net=/run/netns/" + self.name, "--", *argv,
                  check=check, timeout=timeout)

    def delete(self):
        sh("ip", "netns", "delete", self.name, check=False)


def conflist(name, bridge, subnet, first_plugin=None):
    plugins = [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "loopback"},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]
    if first_plugin:
        plugins.insert(0, first_plugin)
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


def script_plugin(bin_dir, name, add_body):
    """A CNI plugin written in sh: ADD runs add_body, DEL/CHECK succeed,
    VERSION answers."""
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/bash\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n"
                "VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":"
                "[\"0.3.1\",\"0.4.0\",\"1.0.0\"]}' ;;\n"
                "ADD) %s ;;\n*) exit 0 ;;\nesac\n" % add_body)
    os.chmod(path, 0o755)
    return path


def write_json_atomic(path, obj):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, path)


# ---- daemons ---------------------------------------------------------------------

class NetnsDaemon(cri_harness.Daemon):
    """picocri serve inside a network namespace (nsenter --net: same PID, the
    host's mount namespace)."""

    def __init__(self, binary, pb, workdir, netns=None, **kw):
        super().__init__(binary, pb, workdir, **kw)
        self.netns = netns

    def argv(self):
        return ["nsenter", "--net=/run/netns/" + self.netns, "--"] + super().argv()


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_apparmor = true
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{registry}"
"""


def write_containerd_config(workdir, sock, cni_bin, cni_conf, pause=PAUSE_IMAGE):
    d = {k: os.path.join(workdir, k) for k in ("root", "state", "registry")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)
    host = "127.0.0.1:%d" % REG_PORT
    os.makedirs(os.path.join(d["registry"], host), exist_ok=True)
    with open(os.path.join(d["registry"], host, "hosts.toml"), "w") as f:
        f.write('server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n'
                % (host, host))
    cfg = os.path.join(workdir, "config.toml")
    with open(cfg, "w") as f:
        f.write(CONTAINERD_CONFIG.format(sock=sock, cni_bin=cni_bin, cni_conf=cni_conf,
                                         pause=pause, **d))
    return cfg


class ContainerdDaemon(cri_harness.Daemon):
    """containerd 1.6 (CRI plugin) in a netns, for checking the tests
    themselves against a reference runtime."""

    def __init__(self, binary, pb, workdir, netns=None, cni_bin=CNI_BIN, **kw):
        kw.pop("log_level", None)
        super().__init__(binary, pb, workdir, **kw)
        self.netns = netns
        self.sock = os.path.join(workdir, "containerd.sock")
        self.config = write_containerd_config(workdir, self.sock, cni_bin, self.cni_conf_dir)

    def argv(self):
        return ["nsenter", "--net=/run/netns/" + self.netns, "--",
                shutil.which("containerd") or "containerd", "--config", self.config]

    def sanitizer_report(self):
        return ""


# ---- a CRI client that skips what is not implemented -----------------------------

class Kube:
    """Calls RPCs like a kubelet; UNIMPLEMENTED -> pytest.skip."""

    def __init__(self, cri):
        self.cri = cri
        self.pb = cri.pb

    def __call__(self, method, request=None, timeout=None):
        try:
            return self.cri.call(method, request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == StatusCode.UNIMPLEMENTED:
                pytest.skip("%s not implemented yet" % method)
            raise

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda request=None, timeout=None: self(name, request, timeout)

    def error(self, method, request=None, timeout=None):
        """Calls and expects an error: returns the grpc.RpcError."""
        try:
            resp = self.cri.call(method, request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() == StatusCode.UNIMPLEMENTED:
                pytest.skip("%s not implemented yet" % method)
            return e
        raise AssertionError("%s succeeded, an error was expected: %s" % (method, resp))

    def expect(self, method, request, *codes, timeout=None):
        e = self.error(method, request, timeout)
        if RUNTIME == "containerd" and StatusCode.INVALID_ARGUMENT in codes:
            # containerd 1.6 answers UNKNOWN for missing fields; accepted only
            # when checking the tests themselves against it.
            codes += (StatusCode.UNKNOWN,)
        assert e.code() in codes, "%s: got %s (%s), want one of %s" % (
            method, e.code(), e.details(), [c.name for c in codes])
        return e


# ---- kubelet-like configs --------------------------------------------------------

def pod_config(env, name=None, namespace="picotest", uid=None, attempt=0,
               host_network=False, pid=None, port_mappings=(), labels=None,
               annotations=None, sysctls=None):
    pb = env.pb
    uid = uid or str(uuid.uuid4())
    name = name or "pod-" + rand_hex(6)
    log_dir = os.path.join(env.logroot, "%s_%s_%s" % (namespace, name, uid))
    os.makedirs(log_dir, exist_ok=True)
    lbl = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
           "io.kubernetes.pod.uid": uid, "app": name}
    lbl.update(labels or {})
    ann = {"kubernetes.io/config.seen": "2026-01-02T03:04:05.123456789Z",
           "kubernetes.io/config.source": "api"}
    ann.update(annotations or {})
    nso = pb.NamespaceOption(network=pb.NODE if host_network else pb.POD,
                             pid=pb.CONTAINER if pid is None else pid, ipc=pb.POD)
    pms = [pb.PortMapping(protocol=pb.TCP, container_port=c, host_port=h)
           for c, h in port_mappings]
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace,
                                       attempt=attempt),
        hostname=name if not host_network else "",
        log_directory=log_dir,
        dns_config=pb.DNSConfig(servers=["10.43.0.10"],
                                searches=["%s.svc.cluster.local" % namespace],
                                options=["ndots:5"]),
        port_mappings=pms, labels=lbl, annotations=ann,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=env.cgroup_parent(uid), sysctls=sysctls or {},
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=nso)))


def container_config(env, pod, name, command, args=(), image=None, attempt=0, envs=None,
                     labels=None, annotations=None, readonly_rootfs=False, run_as_user=None,
                     memory_limit=0, cpu_shares=2, stop_signal=None):
    """ContainerConfig as the kubelet builds it for `pod` (a PodSandboxConfig)."""
    pb = env.pb
    md = pod.metadata
    lbl = {"io.kubernetes.pod.name": md.name, "io.kubernetes.pod.namespace": md.namespace,
           "io.kubernetes.pod.uid": md.uid, "io.kubernetes.container.name": name}
    lbl.update(labels or {})
    ann = {"io.kubernetes.container.hash": rand_hex(8),
           "io.kubernetes.container.restartCount": str(attempt),
           "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
           "io.kubernetes.container.terminationMessagePolicy": "File",
           "io.kubernetes.pod.terminationGracePeriod": "30"}
    ann.update(annotations or {})
    pso = pod.linux.security_context.namespace_options
    sc = pb.LinuxContainerSecurityContext(
        namespace_options=pb.NamespaceOption(network=pso.network, pid=pso.pid, ipc=pso.ipc),
        readonly_rootfs=readonly_rootfs, masked_paths=["/proc/kcore", "/proc/keys"],
        readonly_paths=["/proc/sys", "/proc/sysrq-trigger"])
    if run_as_user is not None:
        sc.run_as_user.value = run_as_user
    res = pb.LinuxContainerResources(cpu_shares=cpu_shares, cpu_period=100000,
                                     memory_limit_in_bytes=memory_limit,
                                     memory_swap_limit_in_bytes=memory_limit,
                                     oom_score_adj=1000)
    img = image or env.image_ref
    cfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=attempt),
        image=pb.ImageSpec(image=img, user_specified_image=IMAGE),
        command=list(command), args=list(args),
        envs=[pb.KeyValue(key=k, value=v.encode()) for k, v in (envs or {}).items()],
        labels=lbl, annotations=ann, log_path="%s/%d.log" % (name, attempt),
        linux=pb.LinuxContainerConfig(resources=res, security_context=sc))
    if stop_signal is not None:
        cfg.stop_signal = stop_signal
    return cfg


# ---- CRI log format ----------------------------------------------------------------

LOG_LINE = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) "
    rb"(stdout|stderr) ([PF])(?::[^ ]*)? (.*)$", re.S)


def read_cri_log(path):
    """[(timestamp, stream, tag, content bytes)]; asserts every record is
    well-formed and \\n-terminated."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return []
    assert data.endswith(b"\n"), "log %s does not end with a newline: %r" % (path, data[-80:])
    out = []
    for raw in data[:-1].split(b"\n"):
        m = LOG_LINE.match(raw)
        assert m, "bad CRI log record in %s: %r" % (path, raw[:200])
        out.append((m.group(1).decode(), m.group(2).decode(), m.group(3).decode(), m.group(4)))
    return out


def log_lines(path, stream=None):
    """Joins P records into full lines: [(stream, bytes)]."""
    lines, partial = [], {}
    for _, st, tag, content in read_cri_log(path):
        partial[st] = partial.get(st, b"") + content
        if tag == "F":
            lines.append((st, partial.pop(st)))
    for st, rest in partial.items():
        lines.append((st, rest))
    return [(s, c) for s, c in lines if stream is None or s == stream]


# ---- leak checks ---------------------------------------------------------------------

def mounts_under(*paths):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            for p in paths:
                p = p.rstrip("/")
                if mp == p or mp.startswith(p + "/"):
                    out.append(mp)
    return out


def procs_with(marker, exclude=()):
    """[(pid, cmdline)] of processes whose command line holds marker."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in exclude or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmd:
            out.append((int(d), cmd.strip()))
    return out


def cgroup_mounts():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0] if right else ""
            if fstype in ("cgroup", "cgroup2"):
                out.append(left.split()[4])
    return out


def cgroup_dirs(root_rel):
    """Every cgroup directory at or below root_rel in every hierarchy."""
    out = []
    for mnt in cgroup_mounts():
        top = os.path.join(mnt, root_rel.lstrip("/"))
        if os.path.isdir(top):
            for dirpath, _, _ in os.walk(top):
                out.append(dirpath)
    return out


def cgroup_procs(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def find_cgroup(root_rel, ctr_id, controller):
    """The cgroup directory of a container (a directory whose name holds its
    id) below root_rel in the hierarchy mounted at .../<controller> (v1; for
    v2 pass "" to use the cgroup2 mount)."""
    for mnt in cgroup_mounts():
        if controller and os.path.basename(mnt) != controller:
            continue
        top = os.path.join(mnt, root_rel.lstrip("/"))
        for dp, _, _ in (os.walk(top) if os.path.isdir(top) else ()):
            if ctr_id in os.path.basename(dp):
                return dp
    return None


class PodEnv:
    """One test's isolated world: netns, CNI, registry, runtime, log root."""

    def __init__(self, request, daemon_factory, pb, store, conf=None, extra_bin_dir=None,
                 with_cni=True, start=True):
        self.pb = pb
        self.request = request
        self.tag = rand_hex(8)
        self.tmp = cri_harness.mkworkdir("ptenv-")
        self.logroot = os.path.join(self.tmp, "pods")
        os.makedirs(self.logroot)
        self.cgroot = "/" + MARK_PREFIX + self.tag
        self.netname = "pt-" + self.tag
        self.bridge = "ptbr" + self.tag[:6]
        a, b = int(self.tag[:2], 16) % 200 + 20, int(self.tag[2:4], 16) % 250
        self.subnet = "10.%d.%d.0/24" % (a, b)
        self.gateway = "10.%d.%d.1" % (a, b)
        self.netns = None
        self.registry = None
        self.daemon = None
        self.image_ref = None
        self.pod_netns = set()  # containerd's pod netns names of this test
        request.addfinalizer(self.teardown)
        self.netns = Netns()
        self.registry = NetnsRegistry(self.netns, store, os.path.join(self.tmp, "reg"))
        self.conf_dir = os.path.join(self.tmp, "cni")
        os.makedirs(self.conf_dir)
        if with_cni:
            self.write_conf(conf or conflist(self.netname, self.bridge, self.subnet))
        bins = CNI_BIN
        if extra_bin_dir:
            # One directory (containerd takes a single bin_dir): the test's
            # script plugins plus links to Debian's plugins.
            for name in os.listdir(CNI_BIN):
                link = os.path.join(extra_bin_dir, name)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(CNI_BIN, name), link)
            bins = extra_bin_dir
        if RUNTIME == "containerd":
            self.daemon = daemon_factory(start=False, daemon_class=ContainerdDaemon,
                                         netns=self.netns.name, cni_bin=bins,
                                         cni_conf_dir=self.conf_dir)
        else:
            self.daemon = daemon_factory(
                extra_args=["--cni-bin-dir", bins, "--cgroup-driver", "cgroupfs"],
                start=False, daemon_class=NetnsDaemon, netns=self.netns.name,
                cni_conf_dir=self.conf_dir)
        if start:
            self.daemon.start()
        self.k = Kube(self.daemon.cri(timeout=60)) if start else None

    def write_conf(self, obj, name="10-picotest.conflist"):
        write_json_atomic(os.path.join(self.conf_dir, name), obj)

    def cgroup_parent(self, uid):
        return "%s/pod%s" % (self.cgroot, uid)

    def restart_client(self):
        self.k = Kube(self.daemon.cri(timeout=60))
        return self.k

    # ---- kubelet steps ----------------------------------------------------------
    def pull(self, ref=IMAGE):
        """PullImage as the kubelet does; skips if PullImage is unimplemented."""
        resp = self.k.PullImage(self.pb.PullImageRequest(image=self.pb.ImageSpec(image=ref)),
                                timeout=120)
        assert resp.image_ref, "PullImage returned an empty image_ref"
        if ref == IMAGE:
            self.image_ref = resp.image_ref
        return resp.image_ref

    def run_pod(self, cfg=None, timeout=120, **kw):
        cfg = cfg or pod_config(self, **kw)
        resp = self.k.RunPodSandbox(self.pb.RunPodSandboxRequest(config=cfg), timeout=timeout)
        assert resp.pod_sandbox_id, "RunPodSandbox returned an empty id"
        self.note_pod_netns(resp.pod_sandbox_id)
        return resp.pod_sandbox_id, cfg

    def note_pod_netns(self, pod_id):
        """containerd keeps pod netns under /run/netns: remember ours (from
        the verbose status), so only those are checked and removed."""
        if RUNTIME != "containerd":
            return
        try:
            info = self.daemon.cri(timeout=30).PodSandboxStatus(self.pb.PodSandboxStatusRequest(
                pod_sandbox_id=pod_id, verbose=True)).info
        except grpc.RpcError:
            return
        for v in info.values():
            self.pod_netns.update(re.findall(r"/run/netns/(cni-[0-9a-f-]+)", v))

    def create(self, pod_id, pod_cfg, cfg):
        resp = self.k.CreateContainer(self.pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=cfg, sandbox_config=pod_cfg))
        assert resp.container_id, "CreateContainer returned an empty id"
        return resp.container_id

    def create_start(self, pod_id, pod_cfg, name, command, **kw):
        if self.image_ref is None:
            self.pull()
        cid = self.create(pod_id, pod_cfg, container_config(self, pod_cfg, name, command, **kw))
        self.k.StartContainer(self.pb.StartContainerRequest(container_id=cid))
        return cid

    def ctr_status(self, cid, verbose=False):
        return self.k.ContainerStatus(self.pb.ContainerStatusRequest(
            container_id=cid, verbose=verbose)).status

    def pod_status(self, pid, verbose=False):
        return self.k.PodSandboxStatus(self.pb.PodSandboxStatusRequest(
            pod_sandbox_id=pid, verbose=verbose)).status

    def wait_state(self, cid, state, timeout=30):
        return wait_for(lambda: (lambda s: s if s.state == state else None)(self.ctr_status(cid)),
                        timeout, "container %s in state %d" % (cid[:12], state))

    def exec_sync(self, cid, cmd, timeout=10, rpc_timeout=None):
        return self.k.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=list(cmd),
                                                       timeout=timeout),
                               timeout=rpc_timeout or (timeout + 30 if timeout else 60))

    def log_path(self, pod_cfg, cfg_name, attempt=0):
        return os.path.join(pod_cfg.log_directory, cfg_name, "%d.log" % attempt)

    def pod_ip(self, pod_id):
        return self.pod_status(pod_id).network.ip

    def stop_remove_all(self):
        """Best effort, through CRI: stop and remove every pod and container."""
        cri = self.daemon.cri(timeout=60)
        pb = self.pb
        try:
            for c in cri.ListContainers(pb.ListContainersRequest()).containers:
                cri.StopContainer(pb.StopContainerRequest(container_id=c.id, timeout=0))
                cri.RemoveContainer(pb.RemoveContainerRequest(container_id=c.id))
            for p in cri.ListPodSandbox(pb.ListPodSandboxRequest()).items:
                cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
                cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))
        except grpc.RpcError:
            pass

    # ---- leaks and cleanup ---------------------------------------------------------
    def _run_netns(self):
        try:
            return os.listdir("/run/netns")
        except OSError:
            return []

    def daemon_pids(self):
        return {self.daemon.proc.pid} if self.daemon and self.daemon.proc else set()

    def leaks(self, exclude_pids=()):
        """Everything of this test's runtime still present (while the daemon
        runs with no pods left)."""
        found = []
        d = self.daemon
        for mp in mounts_under(d.root, d.state, self.logroot):
            found.append("mount left: " + mp)
        skip = set(exclude_pids) | self.daemon_pids()
        if self.registry:
            skip.add(self.registry.proc.pid)
        for pid, cmd in procs_with(d.workdir, skip):
            found.append("process left: %d %s" % (pid, cmd[:200]))
        for cg in cgroup_dirs(self.cgroot):
            mnt = max((m for m in cgroup_mounts() if cg.startswith(m.rstrip("/") + "/")), key=len)
            rel = os.path.relpath(cg, mnt)
            depth = len(rel.split("/"))  # picotest-x = 1, pod<uid> = 2
            if depth > 2 or cgroup_procs(cg):
                found.append("cgroup left: %s (procs %s)" % (cg, cgroup_procs(cg)))
        netdir = "/var/lib/cni/networks/" + self.netname
        if os.path.isdir(netdir):
            leases = [f for f in os.listdir(netdir)
                      if re.match(r"^\d+\.\d+\.\d+\.\d+$", f)]
            if leases:
                found.append("host-local leases left in %s: %s" % (netdir, leases))
        for n in sorted(self.pod_netns & set(self._run_netns())):
            found.append("pod netns left: /run/netns/" + n)
        return found

    def force_cleanup(self):
        d = self.daemon
        problems = []
        if d is not None and d.running():
            try:
                rc = d.stop()
                if rc != 0:
                    problems.append("daemon exited %r on SIGTERM (want 0)" % rc)
            except AssertionError as e:
                problems.append(str(e))
        self.kill_runtime_processes()
        paths = [self.logroot] + ([d.root, d.state] if d else [])
        self.unmount_under(*paths)
        self.remove_cgroups()
        self.delete_pod_netns()
        return problems

    def kill_runtime_processes(self):
        """SIGKILLs what this test's daemons left running (monitors, shims,
        pause: by command line; container processes: by cgroup), by PID;
        the daemon itself must be stopped already."""
        d = self.daemon
        skip = {os.getpid()} | ({self.registry.proc.pid} if self.registry else set())
        kill_left(d.workdir if d is not None else None, self.cgroot, skip)

    def unmount_under(self, *paths):
        for mp in sorted(mounts_under(*paths), key=len, reverse=True):
            sh("umount", "-l", mp, check=False)

    def remove_cgroups(self):
        for cg in sorted(cgroup_dirs(self.cgroot), key=len, reverse=True):
            for _ in range(40):
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)

    def delete_pod_netns(self):
        for n in sorted(self.pod_netns & set(self._run_netns())):
            sh("ip", "netns", "delete", n, check=False)

    def simulate_reboot(self):
        """With the daemon stopped: what a power cycle does to the runtime's
        world.  Processes die, mounts and cgroups vanish, the state dir (a
        tmpfs under /run on a device) is emptied; the persistent root and
        the host-local leases on disk stay."""
        d = self.daemon
        assert not d.running()
        self.kill_runtime_processes()
        self.unmount_under(d.root, d.state)
        self.remove_cgroups()
        self.delete_pod_netns()
        for name in os.listdir(d.state):
            p = os.path.join(d.state, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    def teardown(self):
        problems = []
        try:
            if self.daemon is not None and self.daemon.running():
                self.stop_remove_all()
                problems = self.leaks()
        finally:
            problems += self.force_cleanup()
            if self.registry is not None:
                self.registry.stop()
            if self.netns is not None:
                self.netns.delete()
            shutil.rmtree("/var/lib/cni/networks/" + self.netname, ignore_errors=True)
            if os.path.isdir("/var/lib/cni/results"):
                for f in os.listdir("/var/lib/cni/results"):
                    if f.startswith(self.netname + "-"):
                        os.unlink(os.path.join("/var/lib/cni/results", f))
            if not mounts_under(self.tmp):
                shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("leaked by the runtime after all pods were removed:\n  "
                                 + "\n  ".join(problems))


# ---- fixtures (import them into test modules) ------------------------------------------

@pytest.fixture(scope="session")
def pod_images(tmp_path_factory):
    return ImageStore(str(tmp_path_factory.mktemp("podimages")))


@pytest.fixture
def podenv_factory(request, daemon_factory, pb, pod_images):
    def make(**kw):
        return PodEnv(request, daemon_factory, pb, pod_images, **kw)
    return make


@pytest.fixture
def podenv(podenv_factory):
    return podenv_factory()


def kill_left(workdir, cgroot, skip):
    """SIGKILLs, by PID and until none is left (bounded), the processes whose
    command line names workdir (monitors, shims, pause) and those in the
    cgroups under cgroot (containers), except the PIDs in skip."""
    for _ in range(100):
        pids = [p for p, _ in procs_with(workdir, skip)] if workdir is not None else []
        for cg in cgroup_dirs(cgroot):
            pids += cgroup_procs(cg)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def netns_connect(netns, host, port, timeout=30):
    """A TCP socket connected from inside /run/netns/<netns> (setns in a
    thread of its own, so the caller's namespace never changes)."""
    out = {}

    def run():
        try:
            fd = os.open("/run/netns/" + netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out["s"] = socket.create_connection((host, port), timeout=timeout)
        except Exception as e:  # noqa: BLE001 (re-raised in the caller's thread)
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout + 5)
    if "e" in out:
        raise out["e"]
    return out["s"]
