"""Tests of the real-daemon test infrastructure (tests/support/xen.py,
daemons.py, xen_clients.py and wire.py).

They prove that Xen's own xenstored and oxenstored run here, that Xen's C
clients and xen.lowlevel.xs reach them, and that daemons are cleaned up.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pyxs._internal import Op, encode_frame

from .support import daemons, xen, xen_clients
from .support.commands import REPO
from .support.wire import RawConnection, raw_request

pytestmark = pytest.mark.realdaemon

KIND_PARAMS = pytest.mark.parametrize("kind", daemons.KINDS)



def _process_gone(pid, timeout=5.0):
    """True once ``pid`` no longer exists (or is only a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _connect(daemon, timeout=5.0):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(daemon.socket_path)
    return sock


# Set-up.

def test_prefix_is_idempotent():
    root = xen.require(xen.prefix)
    stamp = (root / ".pyxs-stamp").stat().st_mtime_ns
    assert xen.prefix() == root
    # Nothing was fetched or unpacked again.
    assert (root / ".pyxs-stamp").stat().st_mtime_ns == stamp
    assert (root / ".pyxs-stamp").is_file()
    assert xen.xen_version().startswith("4.17")
    assert (xen.lib_dir() / "libxenstore.so.4").exists()


def test_preload_library_is_cached_by_source_hash():
    lib = xen.require(xen.preload_library)
    assert lib.exists()
    assert lib.name.startswith("libxenfake-") and lib.suffix == ".so"
    assert xen.preload_library() == lib


def test_c_client_names():
    with pytest.raises(ValueError):
        xen_clients.c_client("xenstore-frobnicate")
    argv = xen.require(xen_clients.c_client, "xenstore-read")
    assert argv[0].endswith("/usr/bin/xenstore-read")


def test_require_skips_or_fails(monkeypatch):
    def missing():
        raise xen.Unavailable("frob not found: apt-get install frob")

    monkeypatch.delenv(xen.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="frob not found"):
        xen.require(missing)
    monkeypatch.setenv(xen.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="frob not found"):
        xen.require(missing)
    assert xen.require(lambda x: x + 1, 1) == 2


def test_lowlevel_xs_refuses_other_python_versions(monkeypatch):
    monkeypatch.setattr(xen_clients.sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(xen.Unavailable, match="CPython 3.11 only"):
        xen_clients.load_lowlevel_xs()


def test_lowlevel_xs_skips_on_other_pythons_even_when_daemons_are_required(monkeypatch):
    # No setting could enable it there: run-tests' other Pythons skip it.
    monkeypatch.setenv(xen.REQUIRE_ENV, "1")
    monkeypatch.setattr(xen_clients.sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(pytest.skip.Exception, match="CPython 3.11 only"):
        xen.require(xen_clients.load_lowlevel_xs)


# The shared daemons.

def test_raw_write_read_directory(real_daemon, node_root):
    path = node_root + "/raw"
    assert raw_request(
        real_daemon, Op.WRITE, path.encode() + b"\0hello\x00\xffworld"
    ) == (Op.WRITE, b"OK\0")
    assert raw_request(real_daemon, Op.READ, path.encode() + b"\0") == (
        Op.READ, b"hello\x00\xffworld")
    rtype, children = raw_request(real_daemon, Op.DIRECTORY, b"/\0")
    assert rtype == Op.DIRECTORY
    assert "tool" in children.decode().split("\0")
    assert raw_request(
        real_daemon, Op.READ, node_root.encode() + b"/missing\0"
    ) == (Op.ERROR, b"ENOENT\0")


def test_raw_replies_echo_ids_on_one_connection(real_daemon, node_root):
    path = (node_root + "/ids").encode()
    with RawConnection(real_daemon.socket_path, 5) as conn:
        conn.sock.sendall(encode_frame(Op.WRITE, 77, 0, path + b"\0v")
                          + encode_frame(Op.READ, 78, 0, path + b"\0"))
        replies = [conn.read_frame() for _ in range(2)]
    assert replies == [(Op.WRITE, 77, 0, b"OK\0"), (Op.READ, 78, 0, b"v")]


def test_c_clients(real_daemon, node_root):
    run = xen_clients.run_c_client
    path = node_root + "/c"
    assert run(real_daemon, "xenstore-write", path, "from C").returncode == 0
    done = run(real_daemon, "xenstore-read", path)
    assert (done.returncode, done.stdout) == (0, "from C\n")
    # What the C client wrote is there for a raw reader too.
    assert raw_request(real_daemon, Op.READ, path.encode() + b"\0") == (
        Op.READ, b"from C")
    assert run(real_daemon, "xenstore-list", node_root).stdout.split() == ["c"]
    assert 'c = "from C"' in run(real_daemon, "xenstore-ls", node_root).stdout
    assert run(real_daemon, "xenstore-exists", path).returncode == 0
    assert run(real_daemon, "xenstore-chmod", path, "n0", "r5").returncode == 0
    assert raw_request(real_daemon, Op.GET_PERMS, path.encode() + b"\0") == (
        Op.GET_PERMS, b"n0\0r5\0")
    watch = run(real_daemon, "xenstore-watch", "-n", "1", path)
    assert watch.returncode == 0 and path in watch.stdout
    assert run(real_daemon, "xenstore-rm", path).returncode == 0
    assert run(real_daemon, "xenstore-exists", path).returncode != 0


def test_domain0_only(real_daemon):
    # Domain 0 counts as introduced; other domains cannot be introduced
    # (no grant mapping without a hypervisor): an error reply, no crash.
    assert raw_request(real_daemon, Op.IS_DOMAIN_INTRODUCED, b"0\0") == (
        Op.IS_DOMAIN_INTRODUCED, b"T\0")
    rtype, payload = raw_request(real_daemon, Op.INTRODUCE, b"5\0" b"123\0" b"4\0")
    assert rtype == Op.ERROR and payload in (b"ENOSYS\0", b"EINVAL\0")
    assert raw_request(real_daemon, Op.IS_DOMAIN_INTRODUCED, b"5\0") == (
        Op.IS_DOMAIN_INTRODUCED, b"F\0")
    assert real_daemon.alive()


def test_client_env(real_daemon):
    env = real_daemon.client_env()
    assert env["XENSTORED_PATH"] == real_daemon.socket_path
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(xen.lib_dir())
    assert "LD_PRELOAD" not in env


def test_lowlevel_xs(real_daemon, xs_lowlevel, node_root, monkeypatch):
    monkeypatch.setenv("XENSTORED_PATH", real_daemon.socket_path)
    handle = xs_lowlevel.xs()
    try:
        path = node_root + "/ll"
        handle.write("", path, b"lowlevel")
        assert handle.read("", path) == b"lowlevel"
        assert handle.ls("", node_root) == ["ll"]
        assert handle.read("", node_root + "/missing") is None
        th = handle.transaction_start()
        handle.write(th, path, "in tx")
        assert handle.transaction_end(th) is True
        assert raw_request(
            real_daemon, Op.READ, path.encode() + b"\0") == (Op.READ, b"in tx")
        handle.rm("", path)
        assert handle.read("", path) is None
    finally:
        handle.close()


def test_open_lowlevel_xs_restores_environment(real_daemon, xs_lowlevel, monkeypatch):
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    handle = xen_clients.open_lowlevel_xs(real_daemon)
    try:
        assert "tool" in handle.ls("", "/")
    finally:
        handle.close()
    assert "XENSTORED_PATH" not in os.environ


# Private, killable ones.

@KIND_PARAMS
def test_stop_leaves_no_process(start_daemon, kind):
    daemon = start_daemon(kind)
    pid = daemon.pid
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert f.read().split(b"\0")[0].endswith(kind.encode())
    daemon.stop()
    assert not daemon.alive()
    assert _process_gone(pid)
    daemon.stop()  # idempotent
    with pytest.raises(OSError):
        _connect(daemon, timeout=1)


@KIND_PARAMS
def test_kill_during_pending_request_closes_socket(start_daemon, kind):
    daemon = start_daemon(kind)
    sock = _connect(daemon)
    try:
        daemon.pause()
        sock.sendall(encode_frame(Op.DIRECTORY, 0, 0, b"/\0"))
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(16)  # paused: no answer
        daemon.kill()
        assert not daemon.alive()
        sock.settimeout(5)
        try:
            data = sock.recv(16)
        except ConnectionResetError:
            data = b""
        assert data == b""
    finally:
        sock.close()
    assert _process_gone(daemon.pid)


@KIND_PARAMS
def test_pause_and_resume(start_daemon, kind):
    daemon = start_daemon(kind)
    with RawConnection(daemon.socket_path, 5) as conn:
        daemon.pause()
        conn.sock.sendall(encode_frame(Op.READ, 5, 0, b"/tool\0"))
        conn.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            conn.sock.recv(16)
        daemon.resume()
        conn.sock.settimeout(5)
        rtype, rq_id, _tx, _payload = conn.read_frame()
        assert (rtype, rq_id) == (Op.READ, 5)


@KIND_PARAMS
def test_trace_and_log_tail(start_daemon, kind):
    daemon = start_daemon(kind, trace=True)
    raw_request(daemon, Op.WRITE, b"/traced\0x")
    if kind == "xenstored":
        assert daemon.trace_path.exists()
        deadline = time.monotonic() + 5
        while "/traced" not in daemon.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "/traced" in daemon.log_tail()
    else:
        assert daemon.log_tail()


_ORPHAN_CHECK = """
import ctypes, os, signal, subprocess, sys
# Become a child subreaper: the daemon, once orphaned, is re-parented to us,
# so we can reap it and see that it died (instead of leaving a zombie to init).
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
repo, kind, workdir = sys.argv[1:4]
parent = subprocess.Popen([sys.executable, "-c",
    "import sys, time; sys.path.insert(0, %r); from tests.support import daemons; "
    "d = daemons.start(%r, %r); print(d.pid, flush=True); time.sleep(60)"
    % (repo, kind, workdir)], stdout=subprocess.PIPE, text=True)
daemon_pid = int(parent.stdout.readline())
parent.kill()              # the test process dies hard
parent.wait()
signal.alarm(10)           # the daemon must follow within 10 s
_, status = os.waitpid(daemon_pid, 0)
print("daemon", daemon_pid, "died by signal", os.WTERMSIG(status))
"""


@KIND_PARAMS
def test_daemon_dies_with_its_parent(tmp_path, kind):
    """A test process killed with SIGKILL must not leave its daemon behind."""
    xen.require(xen.preload_library)
    xen.require(xen.prefix)
    done = subprocess.run(
        [sys.executable, "-c", _ORPHAN_CHECK, str(REPO), kind, str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "died by signal %d" % signal.SIGKILL in done.stdout


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        xen.require(daemons.start, "xenstored-ng", tmp_path)


def test_oxenstored_needs_root(tmp_path, monkeypatch):
    # Run as root here, so pretend not to be: the message must say why.
    monkeypatch.setattr(daemons.os, "geteuid", lambda: 1000)
    with pytest.raises(xen.Unavailable, match="root"):
        daemons.start("oxenstored", tmp_path)


def test_oxenstored_dying_early_is_a_failure_not_a_skip(tmp_path, monkeypatch):
    # The machine can run it (checked first); a death with "mount" in its
    # log is still the daemon's failure.
    xen.require(daemons._check_private_mounts)
    monkeypatch.setattr(daemons, "_OXENSTORED_SH", 'echo "mount: it broke" >&2; exit 3')
    with pytest.raises(xen.DaemonError, match="status 3"):
        daemons.start("oxenstored", tmp_path)


def test_no_unshare_is_unavailable_with_the_fix(monkeypatch):
    monkeypatch.setattr(daemons, "_private_mounts", None)
    monkeypatch.setattr(daemons.shutil, "which", lambda name: None)
    with pytest.raises(xen.Unavailable, match="apt-get install util-linux"):
        daemons._check_private_mounts()


def test_no_private_mounts_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setattr(daemons, "_private_mounts", None)
    monkeypatch.setattr(daemons.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "not permitted"))
    with pytest.raises(xen.Unavailable, match="CAP_SYS_ADMIN.*not permitted"):
        daemons._check_private_mounts()


def test_kill_sends_other_signals(start_daemon):
    daemon = start_daemon("xenstored")
    daemon.kill(signal.SIGTERM)
    assert _process_gone(daemon.pid)
