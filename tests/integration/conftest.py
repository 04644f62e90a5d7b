"""pytest fixtures for picocri's integration tests (run as root by run.sh).

What: `pb` (message classes generated from cri/api.proto at test time),
`daemon_factory` (starts any number of `picocri serve` daemons, each with its
own temporary socket and directories, optionally with extra flags), and the
common shortcuts `daemon` and `cri`.

Why: every later integration test (images, pods, streaming) starts the daemon
the same way and must get the same teardown checks for free.

Invariant: at teardown every daemon a test started is stopped with SIGTERM by
PID and must exit 0 within a bound (graceful drain), must not have died on its
own, and its stderr must hold no AddressSanitizer/LeakSanitizer/UBSan report;
any of these fails the test.
"""

import os
import shutil

import pytest

import cri_harness

BIN_DEFAULT = os.path.join(cri_harness.REPO, "build", "host-san", "picocri")


@pytest.fixture(scope="session")
def picocri_bin(tmp_path_factory):
    """A private copy of $PICOCRI_BIN: a relink in the tree mid-run (another
    `make`) cannot swap or truncate the binary under the tests."""
    path = os.environ.get("PICOCRI_BIN", BIN_DEFAULT)
    if not os.access(path, os.X_OK):
        pytest.fail("daemon binary %s is missing (set PICOCRI_BIN or run `make "
                    "SANITIZE=address,undefined`)" % path)
    copy = str(tmp_path_factory.mktemp("bin") / "picocri")
    shutil.copy2(path, copy)
    return copy


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    return cri_harness.load_proto(str(tmp_path_factory.mktemp("proto")))


@pytest.fixture
def daemon_factory(picocri_bin, pb):
    """Returns make(extra_args=(), env=None, start=True, daemon_class=None,
    **kw) -> Daemon."""
    daemons = []

    def make(extra_args=(), env=None, start=True, daemon_class=None, **kw):
        # daemon_class: a cri_harness.Daemon subclass (e.g. one whose argv()
        # adds a command prefix such as `ip netns exec NAME`).
        cls = daemon_class or cri_harness.Daemon
        d = cls(picocri_bin, pb, cri_harness.mkworkdir("pcit-"),
                extra_args=extra_args, env=env, **kw)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield make

    problems = []
    for d in daemons:
        try:
            if d.proc is not None and not d.stopped and d.proc.poll() is not None:
                problems.append("daemon died during the test with exit code %d"
                                % d.proc.returncode)
                d.stopped = True
            if d.running():
                rc = d.stop()
                if rc != 0:
                    problems.append("daemon exited %r on SIGTERM (want 0)" % rc)
        except AssertionError as e:
            problems.append(str(e))
        report = d.sanitizer_report()
        if report:
            problems.append("sanitizer report in daemon stderr:\n" + report)
        if problems:
            problems.append(d.stderr_tail())
        d.cleanup()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


@pytest.fixture
def cri(daemon):
    return daemon.cri()
