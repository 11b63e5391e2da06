"""Xen's own clients against the emulator and against C xenstored.

The C command-line clients (``xenstore-read`` and friends, through
libxenstore) and the C Python extension ``xen.lowlevel.xs`` run the same
script against a fresh real C xenstored and a fresh emulator; their
output must be the same.
"""

import os
import subprocess
import threading
import time

import pytest

from pyxs.testing import XenStoreServer

from ..support import xen, xen_clients

pytestmark = pytest.mark.realdaemon


@pytest.fixture
def backends(start_daemon):
    """A fresh C xenstored and a fresh emulator."""
    real = start_daemon("xenstored")
    with XenStoreServer() as emu:
        yield real, emu


def _env(socket_path):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["XENSTORED_PATH"] = socket_path
    libs = str(xen.require(xen.lib_dir))
    env["LD_LIBRARY_PATH"] = libs + (":" + env["LD_LIBRARY_PATH"]
                                     if env.get("LD_LIBRARY_PATH") else "")
    return env


def _run(socket_path, name, *args, timeout=10):
    proc = subprocess.run(xen.require(xen_clients.c_client, name) + list(args),
                          env=_env(socket_path),
                          capture_output=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


CLIENT_SCRIPT = [
    ("xenstore-ls", "/"),
    ("xenstore-ls", "-p", "/"),
    ("xenstore-write", "/t/a", "1", "/t/b", "two words", "/t/c/d", "deep"),
    ("xenstore-write", "/t/bin", "\\x01\\xff\\t"),
    ("xenstore-write", "rel/x", "relative"),
    ("xenstore-read", "/t/a", "/t/b", "/t/c/d"),
    ("xenstore-read", "-R", "/t/bin"),
    ("xenstore-read", "/t/bin"),
    ("xenstore-read", "rel/x"),
    ("xenstore-read", "/t/missing"),
    ("xenstore-read", "/t/a/"),
    ("xenstore-exists", "/t/a"),
    ("xenstore-exists", "/t/zz"),
    ("xenstore-list", "/t"),
    ("xenstore-list", "/t/nothing"),
    ("xenstore-ls", "/t"),
    ("xenstore-ls", "-f", "/t"),
    ("xenstore-chmod", "/t/a", "n0", "r5", "w7"),
    ("xenstore-chmod", "-r", "/t/c", "b3"),
    ("xenstore-chmod", "/t/a", "q1"),
    ("xenstore-ls", "-p", "/t"),
    ("xenstore-rm", "/t/c/d"),
    ("xenstore-rm", "/t/none/none"),
    ("xenstore-rm", "-t", "/t/bin"),
    ("xenstore-ls", "-f", "-p", "/"),
    ("xenstore-rm", "/t"),
    ("xenstore-rm", "/"),
    ("xenstore-ls", "/"),
]


def test_c_clients_see_the_same(backends):
    real, emu = backends
    outputs = []
    for backend in (real, emu):
        outputs.append([(args, _run(backend.socket_path, *args)) for args in CLIENT_SCRIPT])
    for (args, want), (_, got) in zip(*outputs):
        assert got == want, "%s: emulator %r, xenstored %r" % (" ".join(args), got, want)


def _watch_transcript(socket_path):
    """xenstore-watch for 3 events while another client writes and
    removes: its output."""
    argv = xen.require(xen_clients.c_client, "xenstore-watch") + ["-n", "3", "/w"]
    proc = subprocess.Popen(argv, env=_env(socket_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()  # the watch's own first event
        for args in (("xenstore-write", "/w/x", "1"), ("xenstore-write", "/other", "1"),
                     ("xenstore-rm", "/w")):
            assert _run(socket_path, *args)[0] == 0
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, first + out, err


def test_c_watch_sees_the_same(backends):
    real, emu = backends
    want = _watch_transcript(real.socket_path)
    assert want[1].count(b"\n") == 3, want
    assert _watch_transcript(emu.socket_path) == want


def _lowlevel_script(xs_module, make):
    """Drive two xen.lowlevel.xs handles; return what every call gave."""
    results = []

    def call(fn, *args):
        try:
            value = fn(*args)
        except xs_module.Error as exc:
            value = ("Error", exc.args)
        results.append(value)
        return value

    h1, h2 = make(), make()
    try:
        call(h1.write, "", "/t/a", "1")
        call(h1.write, "", "/t/b/c", b"\x00bin\xff")
        call(h1.read, "", "/t/b/c")
        call(h1.read, "", "/t/none")
        call(h1.ls, "", "/t")
        call(h1.ls, "", "/t/none")
        call(h1.mkdir, "", "/t/m")
        call(h1.get_permissions, "", "/t/a")
        call(h1.set_permissions, "", "/t/a", [{"dom": 5, "read": True}])
        call(h1.get_permissions, "", "/t/a")
        call(h1.set_permissions, "", "/t/a", [{"dom": 0}, {"dom": 3, "write": True}])
        call(h1.get_permissions, "", "/t/a")
        call(h1.get_permissions, "", "/t/none")
        call(h1.rm, "", "/t/none/none")
        call(h1.write, "", "/t/bad path", "x")
        call(h1.get_domain_path, 7)
        call(h1.introduce_domain, 5, 1234, 1)
        call(h1.release_domain, 5)
        call(h1.resume_domain, 5)
        call(h1.set_target, 5, 0)
        # A transaction that conflicts, and one that does not.
        th = call(h1.transaction_start)
        call(h1.read, th, "/t/a")
        call(h2.write, "", "/t/a", "changed")
        call(h1.write, th, "/t/x", "in tx")
        call(h1.read, "", "/t/x")
        call(h1.transaction_end, th)
        th = call(h1.transaction_start)
        call(h1.write, th, "/t/x", "in tx")
        call(h1.ls, th, "/t")
        call(h1.transaction_end, th)
        call(h1.read, "", "/t/x")
        th = call(h1.transaction_start)
        call(h1.write, th, "/t/y", "aborted")
        call(h1.transaction_end, th, 1)
        call(h1.read, "", "/t/y")
        # Watches: the first event, then one per change, in order.
        call(h2.watch, "/t", "token")
        call(h2.read_watch)
        call(h1.write, "", "/t/a", "again")
        call(h1.rm, "", "/t/b")
        call(h2.read_watch)
        call(h2.read_watch)
        call(h2.unwatch, "/t", "token")
        call(h2.unwatch, "/t", "token")
        call(h1.rm, "", "/t")
        call(h1.ls, "", "/")
    finally:
        h1.close()
        h2.close()
    return results


def test_lowlevel_xs_sees_the_same(backends, xs_lowlevel):
    real, emu = backends
    results = []
    for backend in (real, emu):
        results.append(_lowlevel_script(
            xs_lowlevel, lambda: xen_clients.open_lowlevel_xs(backend)))
    assert results[1] == results[0]


def test_lowlevel_xs_concurrent_handles(backends, xs_lowlevel):
    """Several threads with their own handles, one counter updated in
    transactions retried on EAGAIN: no increment is lost on either."""
    results = []
    for backend in backends:
        handle = xen_clients.open_lowlevel_xs(backend)
        handle.write("", "/counter", "0")

        def work():
            h = xen_clients.open_lowlevel_xs(backend)
            try:
                for _ in range(20):
                    while True:
                        th = h.transaction_start()
                        value = int(h.read(th, "/counter"))
                        time.sleep(0.0005)
                        h.write(th, "/counter", str(value + 1))
                        if h.transaction_end(th):
                            break
            finally:
                h.close()

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        results.append(handle.read("", "/counter"))
        handle.close()
    assert results == [b"60", b"60"]
