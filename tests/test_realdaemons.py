"""Tests of the real-daemon test infrastructure (tests/realdaemons.py).

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

import realdaemons
from realdaemons import XS_DIRECTORY, XS_ERROR, XS_READ, XS_WRITE

pytestmark = pytest.mark.realdaemon

KIND_PARAMS = pytest.mark.parametrize("kind", realdaemons.KINDS)


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


def _header(op, payload, req_id=0, tx_id=0):
    return realdaemons._HEADER.pack(op, req_id, tx_id, len(payload)) + payload


# ------------------------------------------------------------------ set-up

def test_prefix_is_idempotent():
    root = realdaemons.require(realdaemons.prefix)
    stamp = (root / ".pyxs-stamp").stat().st_mtime_ns
    assert realdaemons.prefix() == root
    # Nothing was fetched or unpacked again.
    assert (root / ".pyxs-stamp").stat().st_mtime_ns == stamp
    assert (root / ".pyxs-stamp").is_file()
    assert realdaemons.xen_version().startswith("4.17")
    assert (realdaemons.lib_dir() / "libxenstore.so.4").exists()


def test_preload_library_is_cached_by_source_hash():
    lib = realdaemons.require(realdaemons.preload_library)
    assert lib.exists()
    assert lib.name.startswith("libxenfake-") and lib.suffix == ".so"
    assert realdaemons.preload_library() == lib


def test_c_client_names():
    with pytest.raises(ValueError):
        realdaemons.c_client("xenstore-frobnicate")
    argv = realdaemons.require(realdaemons.c_client, "xenstore-read")
    assert argv[0].endswith("/usr/bin/xenstore-read")


def test_require_skips_or_fails(monkeypatch):
    def missing():
        raise realdaemons.Unavailable("frob not found: apt-get install frob")

    monkeypatch.delenv(realdaemons.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="frob not found"):
        realdaemons.require(missing)
    monkeypatch.setenv(realdaemons.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="frob not found"):
        realdaemons.require(missing)
    assert realdaemons.require(lambda x: x + 1, 1) == 2


def test_lowlevel_xs_refuses_other_python_versions(monkeypatch):
    monkeypatch.setattr(realdaemons.sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(realdaemons.Unavailable, match="CPython 3.11 only"):
        realdaemons.load_lowlevel_xs()


def test_lowlevel_xs_skips_on_other_pythons_even_when_daemons_are_required(monkeypatch):
    # No setting could enable it there: run-tests' other Pythons skip it.
    monkeypatch.setenv(realdaemons.REQUIRE_ENV, "1")
    monkeypatch.setattr(realdaemons.sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(pytest.skip.Exception, match="CPython 3.11 only"):
        realdaemons.require(realdaemons.load_lowlevel_xs)


# ------------------------------------------------------- the shared daemons

def test_raw_write_read_directory(real_daemon, node_root):
    path = node_root + "/raw"
    assert realdaemons.raw_request(
        real_daemon, XS_WRITE, path.encode() + b"\0hello\x00\xffworld"
    ) == (XS_WRITE, b"OK\0")
    assert realdaemons.raw_request(real_daemon, XS_READ, path.encode() + b"\0") == (
        XS_READ, b"hello\x00\xffworld")
    rtype, children = realdaemons.raw_request(real_daemon, XS_DIRECTORY, b"/\0")
    assert rtype == XS_DIRECTORY
    assert "tool" in children.decode().split("\0")
    assert realdaemons.raw_request(
        real_daemon, XS_READ, node_root.encode() + b"/missing\0"
    ) == (XS_ERROR, b"ENOENT\0")


def test_raw_replies_echo_ids_on_one_connection(real_daemon, node_root):
    path = (node_root + "/ids").encode()
    with _connect(real_daemon) as sock:
        sock.sendall(_header(XS_WRITE, path + b"\0v", req_id=77)
                     + _header(XS_READ, path + b"\0", req_id=78))
        replies = []
        for _ in range(2):
            hdr = realdaemons._recv_exact(sock, 16)
            rtype, req_id, tx_id, length = realdaemons._HEADER.unpack(hdr)
            replies.append((rtype, req_id, tx_id, realdaemons._recv_exact(sock, length)))
    assert replies == [(XS_WRITE, 77, 0, b"OK\0"), (XS_READ, 78, 0, b"v")]


def test_c_clients(real_daemon, node_root):
    run = realdaemons.run_c_client
    path = node_root + "/c"
    assert run(real_daemon, "xenstore-write", path, "from C").returncode == 0
    done = run(real_daemon, "xenstore-read", path)
    assert (done.returncode, done.stdout) == (0, "from C\n")
    # What the C client wrote is there for a raw reader too.
    assert realdaemons.raw_request(real_daemon, XS_READ, path.encode() + b"\0") == (
        XS_READ, b"from C")
    assert run(real_daemon, "xenstore-list", node_root).stdout.split() == ["c"]
    assert 'c = "from C"' in run(real_daemon, "xenstore-ls", node_root).stdout
    assert run(real_daemon, "xenstore-exists", path).returncode == 0
    assert run(real_daemon, "xenstore-chmod", path, "n0", "r5").returncode == 0
    assert realdaemons.raw_request(real_daemon, 3, path.encode() + b"\0") == (
        3, b"n0\0r5\0")
    watch = run(real_daemon, "xenstore-watch", "-n", "1", path)
    assert watch.returncode == 0 and path in watch.stdout
    assert run(real_daemon, "xenstore-rm", path).returncode == 0
    assert run(real_daemon, "xenstore-exists", path).returncode != 0


def test_domain0_only(real_daemon):
    # Domain 0 counts as introduced; other domains cannot be introduced
    # (no grant mapping without a hypervisor): an error reply, no crash.
    assert realdaemons.raw_request(real_daemon, 17, b"0\0") == (17, b"T\0")
    rtype, payload = realdaemons.raw_request(real_daemon, 8, b"5\0" b"123\0" b"4\0")
    assert rtype == XS_ERROR and payload in (b"ENOSYS\0", b"EINVAL\0")
    assert realdaemons.raw_request(real_daemon, 17, b"5\0") == (17, b"F\0")
    assert real_daemon.alive()


def test_client_env(real_daemon):
    env = real_daemon.client_env()
    assert env["XENSTORED_PATH"] == real_daemon.socket_path
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(realdaemons.lib_dir())
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
        assert realdaemons.raw_request(
            real_daemon, XS_READ, path.encode() + b"\0") == (XS_READ, b"in tx")
        handle.rm("", path)
        assert handle.read("", path) is None
    finally:
        handle.close()


def test_open_lowlevel_xs_restores_environment(real_daemon, xs_lowlevel, monkeypatch):
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    handle = realdaemons.open_lowlevel_xs(real_daemon)
    try:
        assert "tool" in handle.ls("", "/")
    finally:
        handle.close()
    assert "XENSTORED_PATH" not in os.environ


# ---------------------------------------------------- private, killable ones

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
        sock.sendall(_header(XS_DIRECTORY, b"/\0"))
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
    with _connect(daemon) as sock:
        daemon.pause()
        sock.sendall(_header(XS_READ, b"/tool\0", req_id=5))
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(16)
        daemon.resume()
        sock.settimeout(5)
        hdr = realdaemons._recv_exact(sock, 16)
        rtype, req_id, _tx, length = realdaemons._HEADER.unpack(hdr)
        assert (rtype, req_id) == (XS_READ, 5)
        realdaemons._recv_exact(sock, length)


@KIND_PARAMS
def test_trace_and_log_tail(start_daemon, kind):
    daemon = start_daemon(kind, trace=True)
    realdaemons.raw_request(daemon, XS_WRITE, b"/traced\0x")
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
tests, kind, workdir = sys.argv[1:4]
parent = subprocess.Popen([sys.executable, "-c",
    "import sys, time; sys.path.insert(0, %r); import realdaemons; "
    "d = realdaemons.start(%r, %r); print(d.pid, flush=True); time.sleep(60)"
    % (tests, kind, workdir)], stdout=subprocess.PIPE, text=True)
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
    realdaemons.require(realdaemons.preload_library)
    realdaemons.require(realdaemons.prefix)
    tests_dir = os.path.dirname(os.path.abspath(realdaemons.__file__))
    done = subprocess.run(
        [sys.executable, "-c", _ORPHAN_CHECK, tests_dir, kind, str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "died by signal %d" % signal.SIGKILL in done.stdout


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        realdaemons.require(realdaemons.start, "xenstored-ng", tmp_path)


def test_oxenstored_needs_root(tmp_path, monkeypatch):
    # Run as root here, so pretend not to be: the message must say why.
    monkeypatch.setattr(realdaemons.os, "geteuid", lambda: 1000)
    with pytest.raises(realdaemons.Unavailable, match="root"):
        realdaemons.start("oxenstored", tmp_path)


def test_oxenstored_dying_early_is_a_failure_not_a_skip(tmp_path, monkeypatch):
    # The machine can run it (checked first); a death with "mount" in its
    # log is still the daemon's failure.
    realdaemons.require(realdaemons._check_private_mounts)
    monkeypatch.setattr(realdaemons, "_OXENSTORED_SH", 'echo "mount: it broke" >&2; exit 3')
    with pytest.raises(realdaemons.DaemonError, match="status 3"):
        realdaemons.start("oxenstored", tmp_path)


def test_no_unshare_is_unavailable_with_the_fix(monkeypatch):
    monkeypatch.setattr(realdaemons, "_private_mounts", None)
    monkeypatch.setattr(realdaemons.shutil, "which", lambda name: None)
    with pytest.raises(realdaemons.Unavailable, match="apt-get install util-linux"):
        realdaemons._check_private_mounts()


def test_no_private_mounts_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setattr(realdaemons, "_private_mounts", None)
    monkeypatch.setattr(realdaemons.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "not permitted"))
    with pytest.raises(realdaemons.Unavailable, match="CAP_SYS_ADMIN.*not permitted"):
        realdaemons._check_private_mounts()


def test_kill_sends_other_signals(start_daemon):
    daemon = start_daemon("xenstored")
    daemon.kill(signal.SIGTERM)
    assert _process_gone(daemon.pid)
