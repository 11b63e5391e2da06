"""pyxs.Client connecting: transports, backends and the environment."""

import errno
import os

import pytest

from pyxs import Client, ConnectionError, PyXSError, UnixSocketConnection, XenBusConnection

from .helpers import TIMEOUT, errno_of, other_client


def test_lazy_connect(xenstore, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    try:
        c.write(root + "/lazy", "v")       # no connect() first
        assert c.read(root + "/lazy") == "v"
    finally:
        c.close()


def test_lazy_connect_fails_on_first_use(tmp_path):
    c = Client(unix_socket_path=str(tmp_path / "no-such-socket"), socket_timeout=2)
    with pytest.raises(ConnectionError):
        c.read("/a")
    with pytest.raises(ConnectionError):
        c.read("/a")
    c.close()


def test_explicit_connect(xenstore, root, tmp_path):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    try:
        c.connect()
        c.connect()                         # connecting twice is harmless
        c.write(root + "/x", "1")
        assert c.read(root + "/x") == "1"
    finally:
        c.close()
    bad = Client(unix_socket_path=str(tmp_path / "no-such-socket"), socket_timeout=2)
    with pytest.raises(ConnectionError):
        bad.connect()


def test_close_then_use_again(xenstore, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    c.write(root + "/x", "1")
    c.close()
    c.close()                               # closing twice is harmless
    assert c.read(root + "/x") == "1"       # connects again
    c.close()


def test_close_aborts_the_connections_transaction(xenstore, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    t = c.transaction()
    t.write(root + "/lost", "v")
    c.close()
    with other_client(xenstore) as o:
        with pytest.raises(PyXSError) as info:
            o.read(root + "/lost")
        assert errno_of(info) == errno.ENOENT


def test_with_client(xenstore, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    with c as entered:
        assert entered is c
        c.write(root + "/w", "v")
        assert c.read(root + "/w") == "v"
    assert c.connection.fd is None


def test_with_client_closes_on_exception(xenstore, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)
    with pytest.raises(KeyError):
        with c:
            c.write(root + "/w", "v")
            raise KeyError("boom")
    assert c.connection.fd is None


def test_backend_unix_socket_path():
    c = Client(unix_socket_path="/some/where/socket", socket_timeout=2.5)
    assert isinstance(c.connection, UnixSocketConnection)
    assert c.connection.path == "/some/where/socket"
    assert c.connection.socket_timeout == 2.5


def test_backend_xen_bus_path(tmp_path):
    device = str(tmp_path / "xenbus")
    c = Client(xen_bus_path=device)
    assert isinstance(c.connection, XenBusConnection)
    assert c.connection.path == device
    with pytest.raises(ConnectionError):
        c.read("/a")                        # lazily opened; no such device


def test_backend_given_connection(xenstore, root):
    connection = UnixSocketConnection(xenstore.socket_path, socket_timeout=TIMEOUT)
    with Client(connection=connection) as c:
        assert c.connection is connection
        c.write(root + "/conn", "v")
        assert c.read(root + "/conn") == "v"


def test_backend_default_from_xenstored_path(xenstore, root, monkeypatch):
    monkeypatch.setenv("XENSTORED_PATH", xenstore.socket_path)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    with Client() as c:
        assert isinstance(c.connection, UnixSocketConnection)
        assert c.connection.path == xenstore.socket_path
        c.write(root + "/env", "v")
        assert c.read(root + "/env") == "v"


def test_backend_default_from_xenstored_rundir(xenstore, root, monkeypatch):
    rundir, name = os.path.split(xenstore.socket_path)
    assert name == "socket"
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", rundir)
    with Client() as c:
        assert isinstance(c.connection, UnixSocketConnection)
        assert c.connection.path == xenstore.socket_path
        c.write(root + "/rundir", "v")
        assert c.read(root + "/rundir") == "v"


@pytest.mark.parametrize("present, expected", [
    ({"/var/run/xenstored/socket", "/dev/xen/xenbus"}, "/var/run/xenstored/socket"),
    ({"/var/run/xenstored/socket"}, "/var/run/xenstored/socket"),
    ({"/dev/xen/xenbus"}, "/dev/xen/xenbus"),
    ({"/proc/xen/xenbus"}, "/proc/xen/xenbus"),
    (set(), "/var/run/xenstored/socket"),
], ids=["both", "socket", "dev-xenbus", "proc-xenbus", "neither"])
def test_backend_default_without_environment(monkeypatch, present, expected):
    # As libxenstore decides: the daemon's socket, unless it is missing
    # and a XenBus device is there (inside a guest).
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    monkeypatch.setattr(os.path, "exists", lambda path: path in present)
    c = Client()
    assert c.connection.path == expected
    kind = UnixSocketConnection if expected.endswith("socket") else XenBusConnection
    assert type(c.connection) is kind
