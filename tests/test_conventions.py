"""What a Python programmer expects of pyxs: exceptions that are Python's
own, paths refused with a reason, the conveniences of 0.5 (read with a
default, exists, ``in``, repr), the names of pyxs 0.4 as deprecated
aliases, public import paths, and a cheap ``import pyxs``."""

import builtins
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyxs
from pyxs import Client, PyXSError
from pyxs.exceptions import InvalidPath, Timeout, UnexpectedPacket
from pyxs.helpers import validate_path, validate_watch_path


# Exceptions.

def test_except_connectionerror_catches_a_failed_connection(tmp_path):
    client = Client(unix_socket_path=str(tmp_path / "no-daemon-here"))
    with pytest.raises(builtins.ConnectionError) as caught:
        client.read("/x")
    assert type(caught.value) is pyxs.ConnectionError
    assert isinstance(caught.value, OSError)
    # Still pyxs's: no errno from XenStore, the message alone.
    assert caught.value.errno is None and caught.value.strerror is None
    assert str(caught.value).startswith("cannot connect to ")


def test_a_daemon_error_keeps_errno_and_strerror(client, root):
    with pytest.raises(PyXSError) as caught:
        client.read(root + "/missing")
    assert caught.value.errno == errno.ENOENT
    assert caught.value.strerror == os.strerror(errno.ENOENT)
    assert not isinstance(caught.value, OSError)


def test_connection_errors_read_as_before():
    assert str(UnexpectedPacket("bad frame")) == "bad frame"
    assert repr(Timeout("slow")) == "Timeout('slow')"
    assert issubclass(UnexpectedPacket, builtins.ConnectionError)
    assert not issubclass(UnexpectedPacket, TimeoutError)


CHARACTERS = " is not allowed (only ASCII letters, digits and -/_@)"


@pytest.mark.parametrize("path, message", [
    ("", "'': a path cannot be empty"),
    ("/vm/my guest", "'/vm/my guest': ' '" + CHARACTERS),
    ("/vm/caf\u00e9", "'/vm/caf\u00e9': '\u00e9'" + CHARACTERS),
    (b"/vm/a\xffb", "b'/vm/a\\xffb': b'\\xff'" + CHARACTERS),
    ("/vm/a\nb", "'/vm/a\\nb': '\\n'" + CHARACTERS),
    ("@introduceDomain", "'@introduceDomain': only the special paths @introduceDomain and "
                         "@releaseDomain start with '@', and only watches take them"),
    ("/vm//1", "'/vm//1': '//' is not allowed"),
    ("/vm/", "'/vm/': only the root '/' may end with '/'"),
    # Shown whole up to 60 characters, its repr's first 50 beyond.
    ("/" + "a" * 56 + " ", "'/%s ': ' '" % ("a" * 56) + CHARACTERS),
    ("/" + "a" * 57 + " ", "'/%s...: ' '" % ("a" * 48) + CHARACTERS),
    ("/" + "a" * 3072, "'/%s...: 3073 bytes long, over the limit of 3072 for an absolute path"
                       % ("a" * 48)),
    ("a" * 2049, "'%s...: 2049 bytes long, over the limit of 2048 for a relative path"
                 % ("a" * 49)),
])
def test_invalid_path_says_which_rule(path, message):
    with pytest.raises(InvalidPath) as caught:
        validate_path(path)
    assert str(caught.value) == "invalid path " + message


def test_invalid_path_is_refused_before_sending(client):
    with pytest.raises(InvalidPath, match="'//' is not allowed"):
        client.write("/a//b", "x")
    with pytest.raises(InvalidPath, match="only watches take them"):
        validate_watch_path("@fooDomain")


# Conveniences of 0.5.

def test_read_with_a_default(client, root):
    client.write(root + "/name", "guest")
    assert client.read(root + "/name", "other") == "guest"
    assert client.read(root + "/missing", "512") == "512"
    assert client.read(root + "/missing", None) is None
    marker = object()
    assert client.read(root + "/missing", marker) is marker
    with pytest.raises(PyXSError) as caught:
        client.read(root + "/missing")
    assert caught.value.errno == errno.ENOENT


@pytest.fixture
def guest():
    """A client for domain 5 on an emulator (through its XenBus stand-in),
    where /secret is a node it may not read."""
    from pyxs.testing import XenStoreServer

    with XenStoreServer(pty=True, pty_domid=5) as server:
        with Client(unix_socket_path=server.socket_path) as dom0:
            dom0.write("/secret", "x")
            dom0.mkdir("/local/domain/5")
            dom0.set_permissions("/local/domain/5", ["n5"])
        with Client(xen_bus_path=server.pty_path) as client:
            yield client


def test_read_with_a_default_still_raises_other_errors(guest):
    with pytest.raises(PyXSError) as caught:
        guest.read("/secret", "default")
    assert caught.value.errno == errno.EACCES
    assert guest.read("missing", "default") == "default"


def test_exists_and_in(client, root):
    client.write(root + "/a/b", "1")
    assert client.exists(root + "/a")
    assert client.exists(root + "/a/b")
    assert not client.exists(root + "/a/c")
    assert root + "/a/b" in client
    assert (root + "/nothing") not in client
    assert (root + "/a/b").encode() in client
    with pytest.raises(InvalidPath):
        assert (root + "/bad path") in client
    with pytest.raises(TypeError, match="path must be str or bytes"):
        assert 42 in client


def test_exists_raises_when_xenstore_will_not_say(guest):
    with pytest.raises(PyXSError) as caught:
        guest.exists("/secret")
    assert caught.value.errno == errno.EACCES
    with pytest.raises(PyXSError):
        assert "/secret" in guest
    assert not guest.exists("missing")


def test_mapping_methods(client, root):
    client[root + "/k"] = 5
    assert client[root + "/k"] == "5"
    del client[root + "/k"]
    assert root + "/k" not in client
    with pytest.raises(PyXSError):
        client[root + "/k"]


def test_repr_names_the_connection(xenstore):
    client = Client(unix_socket_path=xenstore.socket_path)
    where = "UnixSocketConnection(%r)" % xenstore.socket_path
    assert repr(client) == "<Client on %s, not connected>" % where
    with client:
        assert repr(client) == "<Client on %s, connected>" % where
        with client.transaction() as t:
            assert repr(t) == "<Client on %s, connected, in transaction %d>" % (where, t.tx_id)
        monitor = client.monitor()
        assert repr(monitor) == "<Monitor on %s, not connected>" % where
        with monitor:
            assert repr(monitor) == "<Monitor on %s, connected>" % where


# pyxs 0.4.

@pytest.mark.parametrize("old, new", [
    ("list", "Client.ls()"),
    ("delete", "Client.rm()"),
    ("get_perms", "Client.get_permissions()"),
    ("set_perms", "Client.set_permissions()"),
])
def test_0_4_names_of_client_methods(client, root, old, new):
    client.write(root + "/node", "v")
    args = {"list": (root,), "delete": (root + "/node",), "get_perms": (root + "/node",),
            "set_perms": (root + "/node", ["b0", "r3"])}[old]
    with pytest.warns(DeprecationWarning, match=r"Client\.%s\(\) is deprecated.*use %s"
                      % (old, new.replace("(", r"\(").replace(")", r"\)"))) as warned:
        result = getattr(client, old)(*args)
    assert warned[0].filename == __file__  # Blamed on the caller.
    if old == "list":
        assert result == ["node"]
    elif old == "delete":
        assert root + "/node" not in client
    elif old == "get_perms":
        assert result == ["n0"]
    else:
        assert client.get_permissions(root + "/node") == ["b0", "r3"]


def test_0_4_commit_and_rollback(xenstore, root):
    with Client(unix_socket_path=xenstore.socket_path) as c, \
            Client(unix_socket_path=xenstore.socket_path) as rival:
        c.write(root + "/n", "0")
        c.transaction_start()
        c.write(root + "/n", "1")
        with pytest.warns(DeprecationWarning, match=r"use Client\.transaction_end\(commit=True\)"):
            assert c.commit() is True
        assert c.tx_id == 0 and rival.read(root + "/n") == "1"

        c.transaction_start()
        c.read(root + "/n")
        c.write(root + "/n", "2")
        rival.write(root + "/n", "3")
        with pytest.warns(DeprecationWarning):
            assert c.commit() is False  # Conflict: nothing committed.
        assert c.tx_id == 0 and rival.read(root + "/n") == "3"

        c.transaction_start()
        c.write(root + "/n", "4")
        with pytest.warns(DeprecationWarning, match=r"use Client\.transaction_end\(commit=False\)"):
            c.rollback()
        assert c.tx_id == 0 and rival.read(root + "/n") == "3"


@pytest.mark.parametrize("method", ["commit", "rollback"])
def test_0_4_commit_without_a_transaction_explains(client, method):
    # pyxs 0.4's transaction() put the client itself in the transaction;
    # 0.5's returns another client, so the 0.4 pattern lands here.
    client.transaction()
    with pytest.warns(DeprecationWarning), pytest.raises(PyXSError) as caught:
        getattr(client, method)()
    assert caught.value.errno == errno.ENOENT
    assert "transaction() returns a new client" in caught.value.strerror


@pytest.mark.parametrize("old, new, arg", [
    ("check_path", "validate_path", "/a/b"),
    ("check_watch_path", "validate_watch_path", "@releaseDomain"),
    ("check_perms", "validate_perms", ["b0"]),
])
def test_0_4_names_of_helpers(old, new, arg):
    import pyxs.helpers

    with pytest.warns(DeprecationWarning, match=r"^pyxs\.helpers\.%s\(\) is deprecated since "
                      r"pyxs 0\.5\.0: use pyxs\.helpers\.%s\(\) instead$" % (old, new)):
        assert getattr(pyxs.helpers, old)(arg) is arg
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError):
        getattr(pyxs.helpers, old)("bad path" if old != "check_perms" else ["x"])


def test_0_4_package_names():
    import pyxs.compat

    with pytest.warns(DeprecationWarning, match=r"use pyxs\.compat\.Error"):
        assert pyxs.Error is pyxs.compat.Error
    with pytest.raises(AttributeError, match="no attribute 'Router'"):
        assert pyxs.Router


def test_0_4_monitor_function(xenstore, monkeypatch):
    with pytest.warns(DeprecationWarning, match=r"use pyxs\.Client\(\.\.\.\)\.monitor\(\)"):
        m = pyxs.monitor(unix_socket_path=xenstore.socket_path)
    assert isinstance(m, pyxs.Monitor)
    with m:
        m.watch("/pyxs-test", "t")
        assert m.wait(timeout=5) == pyxs.Event("/pyxs-test", "t")


# Public import paths.

def test_public_paths_are_the_same_objects():
    import pyxs._compat
    import pyxs._internal
    import pyxs.compat
    import pyxs.protocol

    assert pyxs.compat.xs is pyxs._compat.xs is pyxs.xs
    assert pyxs.compat.Error is pyxs._compat.Error
    for name in pyxs.protocol.__all__:
        assert getattr(pyxs.protocol, name) is getattr(pyxs._internal, name)
    assert pyxs.protocol.Op is pyxs.Op and pyxs.protocol.Packet is pyxs.Packet


# Import cost.

def _modules_after(code):
    # -S: without site, nothing is imported before pyxs but what the
    # interpreter itself needs, so every module pyxs pulls in shows.
    env = dict(os.environ, PYTHONPATH=str(Path(pyxs.__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, "-S", "-c",
                          code + "; import sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, check=True, timeout=60)
    return set(out.stdout.split())


def test_import_pyxs_stays_light():
    modules = _modules_after("import pyxs")
    assert "pyxs.client" in modules
    heavy = {"inspect", "socket", "platform", "tempfile", "pathlib", "asyncio", "logging.handlers",
             "pyxs._compat", "pyxs.testing", "pytest"}
    assert not heavy & modules


def test_the_shim_is_imported_on_first_use():
    modules = _modules_after("from pyxs import xs")
    assert "pyxs._compat" in modules and "inspect" not in modules
