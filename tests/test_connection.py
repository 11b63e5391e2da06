"""The transports on their own: bytes over a descriptor, bounded waits,
and OS failures turned into ConnectionError naming the path."""

import builtins
import os
import socket
import threading
import time
import tty

import pytest

from pyxs import Client, ConnectionError, Timeout, UnixSocketConnection, XenBusConnection

from .support.threads import InThread

# More than any socket buffer holds, so that writing it must wait for room.
BIG = 4 << 20


@pytest.fixture
def listener(tmp_path):
    """A Unix socket that accepts, and hands back, one peer."""
    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    yield path, server
    server.close()


def connected(listener, timeout=5):
    path, server = listener
    conn = UnixSocketConnection(path, socket_timeout=timeout)
    conn.connect()
    peer, _ = server.accept()
    return conn, peer


def test_send_waits_for_room_and_delivers_every_byte(listener):
    conn, peer = connected(listener)
    data = os.urandom(BIG)
    received = bytearray()

    def drain():
        time.sleep(0.2)  # Let the writer fill the buffer and wait first.
        while len(received) < len(data):
            chunk = peer.recv(65536)
            if not chunk:
                break
            received.extend(chunk)
    reader = InThread(drain)
    conn.send(data, timeout=5)
    reader.value()
    assert bytes(received) == data
    conn.disconnect()
    peer.close()


def test_send_times_out_when_the_other_end_stops_reading(listener):
    conn, peer = connected(listener)
    started = time.monotonic()
    with pytest.raises(Timeout, match="write to"):
        conn.send(os.urandom(BIG), timeout=0.3)
    assert time.monotonic() - started < 10
    conn.disconnect()
    peer.close()


def test_read_never_blocks_and_reports_the_other_end_closing(listener):
    conn, peer = connected(listener)
    assert conn.read() == b""
    peer.sendall(b"abc")
    time.sleep(0.05)
    assert conn.read() == b"abc"
    peer.close()
    time.sleep(0.05)
    with pytest.raises(ConnectionError, match="closed the connection"):
        conn.read()
    conn.disconnect()


def test_connect_and_disconnect_are_idempotent(listener):
    conn, peer = connected(listener)
    fd = conn.fileno()
    conn.connect()
    assert conn.fileno() == fd
    conn.disconnect()
    conn.disconnect()
    assert not conn.is_connected
    with pytest.raises(ConnectionError, match="not connected"):
        conn.fileno()
    peer.close()


@pytest.mark.parametrize("make", [
    lambda path: UnixSocketConnection(path),
    lambda path: XenBusConnection(path),
], ids=["unix", "xenbus"])
def test_failures_name_the_path(tmp_path, make):
    path = str(tmp_path / "missing")
    with pytest.raises(ConnectionError, match="missing"):
        make(path).connect()


def test_xenbus_connection_speaks_through_a_character_device():
    master, slave = os.openpty()
    tty.setraw(slave)
    conn = XenBusConnection(os.ttyname(slave), timeout=5)
    try:
        conn.connect()
        conn.send(b"request", timeout=5)
        assert os.read(master, 64) == b"request"
        os.write(master, b"reply")
        deadline = time.monotonic() + 5
        data = b""
        while not data and time.monotonic() < deadline:
            data = conn.read()
        assert data == b"reply"
    finally:
        conn.disconnect()
        os.close(master)
        os.close(slave)


def test_connect_waits_out_a_full_accept_queue(tmp_path):
    # A Unix socket refuses a non-blocking connect at once (EAGAIN) while
    # its accept queue is full; the connection waits, within its timeout.
    path = str(tmp_path / "socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    queued = []
    try:
        while True:  # Fill the queue until a non-blocking connect is refused.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.close()
                break
            queued.append(sock)
        accepter = threading.Timer(0.3, lambda: queued.append(server.accept()[0]))
        accepter.start()
        conn = UnixSocketConnection(path, socket_timeout=5)
        conn.connect()
        assert conn.is_connected
        conn.disconnect()
        accepter.join()
        with pytest.raises(Timeout, match="queue stayed full"):
            UnixSocketConnection(path, socket_timeout=0.3).connect()
    finally:
        for sock in queued:
            sock.close()
        server.close()


def test_a_timeout_is_pythons_timeouterror_too(listener):
    # The daemon takes the connection and never answers.
    client = Client(unix_socket_path=listener[0], socket_timeout=0.2)
    with pytest.raises(TimeoutError) as caught:
        client.read("/x")
    assert isinstance(caught.value, Timeout)
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value, builtins.ConnectionError)
    client.close()


@pytest.mark.parametrize("kind", [UnixSocketConnection, XenBusConnection])
def test_both_transports_take_timeout_and_its_older_name(kind):
    # timeout is the name both document; socket_timeout, pyxs 0.4's name on
    # the socket transport, works on both.
    for conn in (kind("/some/where", timeout=2.5), kind("/some/where", socket_timeout=2.5),
                 kind("/some/where", 2.5)):
        assert conn.timeout == conn.socket_timeout == 2.5
    from pyxs.connection import DEFAULT_TIMEOUT
    assert kind("/some/where").timeout == DEFAULT_TIMEOUT
    with pytest.raises(TypeError, match="not both"):
        kind("/some/where", timeout=1, socket_timeout=2)
