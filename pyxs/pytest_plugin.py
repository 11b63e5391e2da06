"""pytest fixtures that give the code under test a XenStore: pyxs's
in-process emulator (:class:`pyxs.testing.XenStoreServer`).

When pyxs is installed, pytest finds this plugin by itself (through the
``pytest11`` entry point); otherwise enable it with ``-p
pyxs.pytest_plugin``.  The emulator is only imported, and only started,
by a test that uses one of the fixtures: other test runs pay nothing.

``xenstore_server``
    A running emulator, with ``XENSTORED_PATH`` pointing at its socket for
    the length of the test, so that ``pyxs.Client()``, ``pyxs.compat.xs()``
    and Xen's own tools reach it without being told where it is.  The
    tree holds what a freshly started ``xenstored`` holds, plus the nodes
    of ``xenstore_tree``.
``xenstore_client``
    A connected :class:`pyxs.Client` on that server, closed after the test.
``xenstore_tree``
    The nodes to create before the test: ``{}`` unless a test, a module
    or a ``conftest.py`` provides it.  Keys are absolute paths; a value
    is what to write there (str or bytes), or a dict of children by name.
``xenstore_guest_server``
    A running emulator that also serves a guest's XenBus device
    (:attr:`~pyxs.testing.XenStoreServer.xenbus_path`) for domain 1, whose
    home ``/local/domain/1`` exists and belongs to it.  Needs Linux and
    root (or ``fusermount3``); skipped otherwise.
``xenstore_guest_client``
    A :class:`pyxs.Client` on that device: domain 1's view.

By default each test gets a fresh server.  With ``--xenstore-scope
session`` (or ``xenstore_scope = session`` in the ini file) the whole run
shares one, which is faster; the tree is then put back to that of a fresh
daemon, and seeded again, before each test.

.. versionadded:: 0.5.0
   ``xenstore_tree``, the session scope, and ``XENSTORED_PATH`` pointing
   at the server; the plugin's name ``pyxs.pytest_plugin`` (the old
   ``pyxs.testing.pytest_plugin`` still works).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator, Mapping, Union

import pytest

from .client import Client

if TYPE_CHECKING:
    from .testing import XenStoreServer

#: What ``xenstore_tree`` holds: values, or dicts of children by name.
Tree = Mapping[str, Union[str, bytes, "Tree"]]

# The nodes a freshly started xenstored holds; a shared server is put
# back to them (empty, readable by domain 0 only) between tests.
_FRESH_NODES = ("/", "/tool", "/tool/xenstored")


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = ("how long one XenStore emulator serves the fixtures of pyxs: "
                 "'function' (a fresh one for each test, the default) or "
                 "'session' (one for the whole run, its tree reset between tests)")
    parser.addoption("--xenstore-scope", choices=("function", "session"), default=None,
                     help=help_text)
    parser.addini("xenstore_scope", help_text, default="function")


def _scope(fixture_name: str, config: pytest.Config) -> str:
    scope = config.getoption("xenstore_scope") or config.getini("xenstore_scope")
    if scope not in ("function", "session"):
        raise pytest.UsageError("xenstore_scope must be 'function' or 'session', not %r"
                                % (scope,))
    return str(scope)


@pytest.fixture(scope=_scope)  # type: ignore[arg-type]  # pytest accepts a callable
def _pyxs_emulator() -> Iterator[XenStoreServer]:
    """The running emulator behind ``xenstore_server``."""
    from .testing import XenStoreServer  # Only for tests that use it.

    with XenStoreServer() as server:
        yield server


@pytest.fixture
def xenstore_tree() -> Tree:
    """The nodes to create before the test (none): provide a fixture of
    this name, or parametrize it, to seed the tree."""
    return {}


@pytest.fixture
def xenstore_server(_pyxs_emulator: XenStoreServer, xenstore_tree: Tree,
                    monkeypatch: pytest.MonkeyPatch,
                    request: pytest.FixtureRequest) -> XenStoreServer:
    """A running XenStore emulator that ``Client()`` finds by itself."""
    server = _pyxs_emulator
    with Client(unix_socket_path=server.socket_path) as client:
        if _scope("xenstore_server", request.config) == "session":
            _reset(client)
        seed(client, xenstore_tree)
    monkeypatch.setenv("XENSTORED_PATH", str(server.socket_path))
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    return server


@pytest.fixture
def xenstore_client(xenstore_server: XenStoreServer) -> Iterator[Client]:
    """A :class:`pyxs.Client` connected to ``xenstore_server``."""
    with Client(unix_socket_path=xenstore_server.socket_path) as client:
        yield client


#: The domain the guest fixtures speak for.
GUEST_DOMID = 1


@pytest.fixture
def xenstore_guest_server() -> Iterator[XenStoreServer]:
    """An emulator serving domain 1's XenBus device too, with the home
    directory a toolstack would have made for it."""
    import tempfile

    from .testing import XenStoreServer  # Only for tests that use it.

    with tempfile.TemporaryDirectory(prefix="pyxs-guest-") as tmp:
        server = XenStoreServer(xenbus_path=os.path.join(tmp, "xenbus"),
                                xenbus_domid=GUEST_DOMID)
        try:
            server.start()
        except OSError as exc:
            pytest.skip("cannot serve a XenBus device here (%s): run as root "
                        "with /dev/fuse, or install fusermount3" % exc)
        try:
            with Client(unix_socket_path=server.socket_path) as dom0:
                home = "/local/domain/%d" % GUEST_DOMID
                dom0.mkdir(home)
                dom0.set_permissions(home, ["n%d" % GUEST_DOMID])
            yield server
        finally:
            server.stop()


@pytest.fixture
def xenstore_guest_client(xenstore_guest_server: XenStoreServer) -> Iterator[Client]:
    """A :class:`pyxs.Client` speaking as domain 1 through the XenBus
    device of ``xenstore_guest_server``."""
    assert xenstore_guest_server.xenbus_path is not None  # Served by the fixture.
    with Client(xen_bus_path=xenstore_guest_server.xenbus_path) as client:
        yield client


def seed(client: Client, tree: Tree, parent: str = "") -> None:
    """Write *tree* through *client*: each key is a path (under *parent*,
    if given), each value the node's value or a dict of its children.

    >>> with Client(unix_socket_path=socket_path) as c:
    ...     seed(c, {"/vm/1": {"name": "guest", "memory": "512"}})
    ...     sorted(c.ls("/vm/1")), c["/vm/1/name"]
    (['memory', 'name'], 'guest')
    """
    for name, value in tree.items():
        path = parent.rstrip("/") + "/" + name if parent else name
        if isinstance(value, Mapping):
            client.mkdir(path)
            seed(client, value, path)
        else:
            client.write(path, value)


def _reset(client: Client) -> None:
    """Put the tree back to a freshly started daemon's."""
    for parent in _FRESH_NODES[:-1]:
        for name in client.ls(parent):
            path = parent.rstrip("/") + "/" + name
            if path not in _FRESH_NODES:
                client.rm(path)
    for path in _FRESH_NODES:
        client.write(path, "")
        client.set_permissions(path, ["n0"])
