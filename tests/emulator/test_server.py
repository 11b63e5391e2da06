"""Tests of the emulator's server: socket and pseudo-terminal serving,
start and stop, the command, the pytest fixtures, and pyxs's own Client
against it."""

import os
import signal
import socket
import threading
import time

import pytest

from pyxs._internal import HEADER, Op, PacketDecoder, encode_frame
from pyxs.testing import XenStoreServer
from pyxs.testing._server import Loop
from pyxs.testing._store import Store

from ..support.commands import emulator_command, run_pytest, run_python
from ..support.wire import Closed, PtyConnection, RawConnection


def _open_fds():
    """This process's open descriptors.  Tests compare them as subsets:
    what earlier tests left (a watch connection's drainer thread, say) may
    close its descriptors meanwhile, and is not the test's business."""
    return set(os.listdir("/proc/self/fd"))


def _threads():
    return {t.ident for t in threading.enumerate()}


# Life cycle.

def test_context_manager_and_default_socket():
    with XenStoreServer() as server:
        assert server.kind == "emulator"
        assert server.running
        assert os.stat(server.socket_path).st_mode & 0o777 == 0o600
        conn = RawConnection(server.socket_path)
        assert conn.call(Op.DIRECTORY, b"/\0") == (Op.DIRECTORY, b"tool\0")
        conn.close()
        path = server.socket_path
    assert not server.running
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))


def test_given_socket_path_replaces_a_stale_socket(tmp_path):
    path = str(tmp_path / "xs.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    with XenStoreServer(path) as server:
        assert server.socket_path == path
        assert RawConnection(path).call(Op.READ, b"/tool\0") == (Op.READ, b"")
    assert not os.path.exists(path)
    assert tmp_path.exists()


def test_start_stop_restart_and_errors():
    server = XenStoreServer()
    assert server.socket_path is None   # made by start()
    server.stop()                       # never started: nothing to do
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    conn = RawConnection(server.socket_path)
    conn.call(Op.WRITE, b"/x\0v")
    server.stop()
    server.stop()
    with pytest.raises((Closed, OSError)):
        conn.call(Op.READ, b"/x\0")
    conn.close()
    server.start()                      # a fresh store
    conn = RawConnection(server.socket_path)
    assert conn.call(Op.READ, b"/x\0") == (Op.ERROR, b"ENOENT\0")
    conn.close()
    server.stop()
    with pytest.raises(ValueError):
        XenStoreServer(pty_domid=-1)


def test_no_thread_or_descriptor_leaks():
    before_fds, before_threads = _open_fds(), _threads()
    for _ in range(5):
        with XenStoreServer(pty=True, pty_domid=3) as server:
            conns = [RawConnection(server.socket_path) for _ in range(4)]
            for conn in conns:
                conn.call(Op.WATCH, b"/\0t\0")
            fd = os.open(server.pty_path, os.O_RDWR | os.O_NOCTTY)
            os.close(fd)
        for conn in conns:
            conn.close()
    # Subsets: threads that earlier tests left may end meanwhile.
    assert _threads() <= before_threads
    assert _open_fds() <= before_fds


def test_failed_start_leaves_what_is_at_the_socket_path(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    before = _open_fds()
    with pytest.raises(OSError):
        XenStoreServer(str(path)).start()
    assert path.read_text() == "keep me"
    assert _open_fds() <= before


def test_failed_pty_set_up_closes_every_descriptor(tmp_path):
    store = Store()
    store.connect(5, socket=False)      # the pty's domain is taken
    before = _open_fds()
    loop = Loop(store, str(tmp_path / "sock"), True, 5)
    with pytest.raises(ValueError):
        loop.open()
    assert _open_fds() <= before
    assert not os.path.exists(tmp_path / "sock")


def test_a_dropped_peer_cannot_drop_the_client_that_reuses_its_number(tmp_path):
    path = str(tmp_path / "sock")
    loop = Loop(Store(), path, False, 0)
    loop.open()
    clients = []

    def accept(client):
        client.connect(path)
        loop._accept()
        return next(iter(loop._peers.values()))

    try:
        clients.append(socket.socket(socket.AF_UNIX))
        old = accept(clients[-1])
        # accept() takes the lowest free number, the one just freed,
        # unless another thread freed a lower one meanwhile: try again.
        for _ in range(10):
            # Made before the drop, so that the freed number goes to the
            # server's side.
            clients.append(socket.socket(socket.AF_UNIX))
            loop._close(old)
            new = accept(clients[-1])
            if new.fd == old.fd:
                break
            old = new
        else:
            pytest.fail("accept() never reused a freed descriptor number")
        loop._close(old)                 # a stale selector key, say
        loop._update(old)
        assert loop._peers == {new.fd: new}
        assert loop._selector.get_key(new.fd).data is new
    finally:
        loop.close()
        for client in clients:
            client.close()


def test_stop_is_bounded_with_clients_still_connected():
    server = XenStoreServer().start()
    conns = [RawConnection(server.socket_path) for _ in range(20)]
    conns[0].send(Op.READ, b"/to")       # half a request in flight
    server.stop()                        # raises if it waited for them
    for conn in conns:
        # The first may get the answer to its request first, or a reset
        # if the request was left unread.
        with pytest.raises((Closed, ConnectionResetError)):
            while True:
                conn.reply()
        conn.close()


# Socket.

def test_oversized_frame_drops_that_connection_only():
    with XenStoreServer() as server:
        bad, good = RawConnection(server.socket_path), RawConnection(server.socket_path)
        bad.sock.sendall(HEADER.pack(Op.READ, 1, 0, 4097))
        with pytest.raises((Closed, ConnectionResetError)):
            bad.reply()
        assert good.call(Op.READ, b"/tool\0") == (Op.READ, b"")
        bad.close()
        good.close()


def test_requests_before_an_oversized_frame_are_answered_first():
    # xenstored reads and handles one message at a time.
    with XenStoreServer() as server:
        conn = RawConnection(server.socket_path)
        conn.sock.sendall(HEADER.pack(Op.WRITE, 1, 0, 4) + b"/a\0v"
                          + HEADER.pack(Op.READ, 2, 0, 4097))
        assert conn.reply(1) == ([], (Op.WRITE, b"OK\0"))
        with pytest.raises((Closed, ConnectionResetError)):
            conn.reply()
        conn.close()
        other = RawConnection(server.socket_path)
        assert other.call(Op.READ, b"/a\0") == (Op.READ, b"v")
        other.close()


def test_request_that_crashes_xenstored_drops_the_connection():
    with XenStoreServer() as server:
        conn, other = RawConnection(server.socket_path), RawConnection(server.socket_path)
        conn.call(Op.WATCH, b"/\0t\0")   # leaves the daemon's errno at 0
        conn.send(Op.READ, b"/tool\0junk")
        with pytest.raises(Closed):
            conn.reply()
        assert other.call(Op.READ, b"/tool\0") == (Op.READ, b"")
        conn.close()
        other.close()


def test_a_failing_request_costs_only_its_connection(monkeypatch):
    with XenStoreServer() as server:
        conn, other = RawConnection(server.socket_path), RawConnection(server.socket_path)
        real = server.store.handle_raw

        def broken(c, op, *args):
            if op == Op.MKDIR:
                raise RuntimeError("a bug")
            return real(c, op, *args)

        monkeypatch.setattr(server.store, "handle_raw", broken)
        conn.send(Op.MKDIR, b"/x\0")
        with pytest.raises(Closed):
            conn.reply()
        assert other.call(Op.READ, b"/tool\0") == (Op.READ, b"")
        assert server.running
        conn.close()
        other.close()


def test_frames_split_and_batched_arbitrarily():
    with XenStoreServer() as server:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(server.socket_path)
        data = b"".join(encode_frame(Op.WRITE, i, 0, b"/a%d\0%d" % (i, i)) for i in range(1, 10))
        for i in range(0, len(data), 7):
            sock.sendall(data[i:i + 7])
            time.sleep(0.001)
        decoder, replies = PacketDecoder(), []
        while len(replies) < 9:
            replies += decoder.feed(sock.recv(4096))
        assert [(p.op, p.rq_id, p.payload) for p in replies] == \
            [(Op.WRITE, i, b"OK\0") for i in range(1, 10)]
        sock.close()


def test_many_concurrent_clients():
    with XenStoreServer() as server:
        watcher = RawConnection(server.socket_path)
        watcher.call(Op.WATCH, b"/c\0w\0")
        errors = []

        def work(n):
            try:
                conn = RawConnection(server.socket_path)
                for i in range(50):
                    assert conn.call(Op.WRITE, b"/c/%d/%d\0x" % (n, i)) == (Op.WRITE, b"OK\0")
                conn.close()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        events = watcher.sync()
        assert len(events) == 1 + 8 * 50
        watcher.close()


# Pseudo-tty.

def test_pty_as_dom0():
    with XenStoreServer(pty=True) as server:
        assert server.pty_path and os.path.exists(server.pty_path)
        dev = PtyConnection(server.pty_path)
        value = bytes(range(256)) * 4      # every byte survives raw mode
        assert dev.call(Op.WRITE, b"/bin\0" + value) == (Op.WRITE, b"OK\0")
        assert dev.call(Op.READ, b"/bin\0") == (Op.READ, value)
        assert dev.call(Op.WRITE, b"rel\0r") == (Op.WRITE, b"OK\0")
        sock = RawConnection(server.socket_path)
        assert sock.call(Op.READ, b"/local/domain/0/rel\0") == (Op.READ, b"r")
        assert dev.call(Op.DEBUG, b"print\0x\0") == (Op.DEBUG, b"OK\0")
        dev.close()
        # The conversation outlives one opener of the device.
        dev = PtyConnection(server.pty_path)
        assert dev.call(Op.READ, b"/bin\0") == (Op.READ, value)
        dev.close()
        sock.close()


def test_pty_as_an_unprivileged_guest():
    with XenStoreServer(pty=True, pty_domid=7) as server:
        admin = RawConnection(server.socket_path)
        assert admin.call(Op.IS_DOMAIN_INTRODUCED, b"7\0") == (Op.IS_DOMAIN_INTRODUCED, b"T\0")
        admin.call(Op.MKDIR, b"/local/domain/7\0")
        admin.call(Op.SET_PERMS, b"/local/domain/7\0n7\0")
        admin.call(Op.WATCH, b"@releaseDomain\0r\0")
        guest = PtyConnection(server.pty_path)
        assert guest.call(Op.WRITE, b"name\0vm") == (Op.WRITE, b"OK\0")
        assert guest.call(Op.GET_PERMS, b"name\0") == (Op.GET_PERMS, b"n7\0")
        assert guest.call(Op.WRITE, b"/elsewhere\0x") == (Op.ERROR, b"EACCES\0")
        assert guest.call(Op.DEBUG, b"print\0x\0") == (Op.ERROR, b"EACCES\0")
        # Releasing the domain ends its conversation and its nodes.
        assert admin.request(Op.RELEASE, b"7\0") == (
            [b"@releaseDomain\0r\0"] * 2, (Op.RELEASE, b"OK\0"))   # the first, then the real one
        assert admin.call(Op.READ, b"/local/domain/7\0") == (Op.ERROR, b"ENOENT\0")
        guest.send(Op.READ, b"name\0")
        guest.timeout = 0.3
        with pytest.raises(TimeoutError):
            guest.reply()
        guest.close()
        admin.close()


def test_pty_oversized_frame_is_ignored_not_closed():
    with XenStoreServer(pty=True, pty_domid=2) as server:
        guest = PtyConnection(server.pty_path)
        guest.call(Op.WATCH, b"/\0t\0")
        os.write(guest.fd, HEADER.pack(Op.READ, 1, 0, 5000))
        guest.send(Op.READ, b"/\0")
        guest.timeout = 0.3
        with pytest.raises(TimeoutError):
            guest.reply()
        admin = RawConnection(server.socket_path)
        assert admin.call(Op.READ, b"/tool\0") == (Op.READ, b"")
        admin.close()
        guest.close()


# Command and fixtures.

def test_command_serves_until_sigterm(tmp_path):
    path = str(tmp_path / "sock")
    with emulator_command("--socket", path, "--pty") as proc:
        assert proc.stdout.readline().strip() == "socket: %s" % path
        assert proc.stdout.readline().startswith("pty: /dev/pts/")
        conn = RawConnection(path)
        assert conn.call(Op.DIRECTORY, b"/\0") == (Op.DIRECTORY, b"tool\0")
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(path)


def test_command_reports_a_bad_socket_path(tmp_path):
    proc = run_python("-m", "pyxs.testing", "--socket", str(tmp_path / "missing-dir" / "sock"),
                      timeout=30)
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr


PLUGIN_TEST = '''
from pyxs.testing import XenStoreServer

def test_server(xenstore_server):
    assert isinstance(xenstore_server, XenStoreServer) and xenstore_server.running

def test_client(xenstore_client, xenstore_server):
    xenstore_client.write("/hello", "world")
    assert xenstore_client.read("/hello") == "world"
    assert xenstore_client.ls("/") == ["tool", "hello"]

def test_fresh_each_time(xenstore_client):
    assert xenstore_client.ls("/") == ["tool"]
'''


def test_pytest_plugin_fixtures(tmp_path):
    proc = run_pytest(tmp_path, {"test_uses_plugin.py": PLUGIN_TEST})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


# Pyxs's own Client.

def test_pyxs_client_against_the_emulator():
    from pyxs.client import Client

    with XenStoreServer() as server:
        with Client(unix_socket_path=server.socket_path) as client:
            client.write("/vm/1/name", "guest")
            assert client.read("/vm/1/name") == "guest"
            assert client.ls("/vm/1") == ["name"]
            assert client.get_permissions("/vm/1") == ["n0"]
            assert client.get_domain_path(3) == "/local/domain/3"
            assert client.is_domain_introduced(0)
            client.rm("/vm")
            assert client.ls("/") == ["tool"]
