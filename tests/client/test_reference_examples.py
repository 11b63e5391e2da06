"""The examples of the reference documentation of pyxs 0.3, run as
they are written."""

import pytest

from pyxs import Client, Event, UnixSocketConnection, XenBusConnection

from ..support.threads import InThread
from .helpers import TIMEOUT, raw_rm, topmost_missing


@pytest.fixture
def tutorial_env(xenstore, monkeypatch):
    """XENSTORED_PATH pointing at the daemon, so that ``Client()`` finds
    it, and removal afterwards of what the examples create outside of
    ``root`` (when it did not exist before)."""
    monkeypatch.setenv("XENSTORED_PATH", xenstore.socket_path)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    created = [topmost_missing(xenstore, path)
               for path in ("/foo/bar", "/local/domain/0/name")]
    yield
    for path in created:
        raw_rm(xenstore, path)


def test_tutorial_basics(tutorial_env):
    with Client() as c:
        c["/local/domain/0/name"] = "Domain0"
        assert c["/local/domain/0/name"] == "Domain0"


def test_tutorial_client_example(tutorial_env):
    with Client() as c:
        c.write("/foo/bar", "baz")
        assert c.read("/foo/bar") == "baz"


def test_tutorial_transactions(tutorial_env):
    c = Client()
    with c.transaction() as t:
        t["/foo/bar"] = "baz"
        t.transaction_end(commit=True)
    assert c["/foo/bar"] == "baz"
    c.close()


def test_tutorial_transaction_default_commit(tutorial_env):
    with Client().transaction() as t:
        t["/foo/bar"] = "qux"
    with Client() as c:
        assert c["/foo/bar"] == "qux"


def test_tutorial_events(tutorial_env):
    with Client() as c:
        c.watch("/foo/bar", "a unique token")
        assert InThread(c.wait).value(TIMEOUT) == Event("/foo/bar", "a unique token")


def test_tutorial_events_special_path(tutorial_env):
    with Client() as c:
        c.watch("@introduceDomain", "intro")
        assert InThread(c.wait).value(TIMEOUT) == Event("@introduceDomain", "intro")


def test_monitor_example(tutorial_env):
    # The reference shows ``m.watch("foo/bar")``; watch() takes a token too.
    m = Client().monitor()
    m.watch("foo/bar", "token")
    assert InThread(m.wait).value(TIMEOUT) == Event("foo/bar", "token")
    m.close()


def test_introduction_examples():
    # Constructing a client does not connect, so these work anywhere.
    c = Client(unix_socket_path="/var/run/xenstored/socket")
    assert type(c.connection) is UnixSocketConnection
    assert c.connection.path == "/var/run/xenstored/socket"
    assert not c.connection.is_connected
    c = Client(xen_bus_path="/proc/xen/xenbus")
    assert type(c.connection) is XenBusConnection
    assert c.connection.path == "/proc/xen/xenbus"
    assert not c.connection.is_connected
