"""`picocri version` and `picocri info`: the client subcommands a person runs
on the device, against a live daemon and against none."""

import os
import socket
import subprocess

import cri_harness


def run_cli(binary, *args, timeout=30):
    env = dict(os.environ)
    env.update(cri_harness.SAN_ENV)
    p = subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=env)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    report = cri_harness.sanitizer_report_in(err)
    assert not report, "sanitizer report from `picocri %s`:\n%s" % (" ".join(args), report)
    return p.returncode, out, err


def test_cli_version(daemon, picocri_bin):
    rc, out, err = run_cli(picocri_bin, "version", "--socket", daemon.sock)
    assert rc == 0, err
    want = open(os.path.join(cri_harness.REPO, "VERSION")).read().strip()
    assert "picocri" in out
    assert want in out
    assert "v1" in out


def test_cli_info(daemon, picocri_bin):
    rc, out, err = run_cli(picocri_bin, "info", "--socket", daemon.sock)
    assert rc == 0, err
    assert "RuntimeReady" in out
    assert "NetworkReady" in out


def check_fails_cleanly(picocri_bin, sock):
    for sub in ("version", "info"):
        rc, out, err = run_cli(picocri_bin, sub, "--socket", sock, timeout=30)
        assert rc > 0, "`picocri %s` against %s: rc %d (want a plain failure)" % (sub, sock, rc)
        assert err.strip(), "`picocri %s` failed without a message" % sub
        assert len(err.splitlines()) <= 5, "one short message, not a dump:\n" + err


def test_cli_daemon_down(daemon_factory, picocri_bin):
    d = daemon_factory()
    sock = d.sock
    assert d.stop() == 0
    check_fails_cleanly(picocri_bin, sock)


def test_cli_stale_socket(picocri_bin):
    """A socket file nobody listens on (daemon killed): ECONNREFUSED."""
    path = cri_harness.mkworkdir("pcit-cli-")
    try:
        sock = os.path.join(path, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock)
        s.close()
        check_fails_cleanly(picocri_bin, sock)
        check_fails_cleanly(picocri_bin, os.path.join(path, "missing.sock"))
    finally:
        for f in os.listdir(path):
            os.unlink(os.path.join(path, f))
        os.rmdir(path)
