"""pytest fixtures for code that talks to XenStore.

Enable them with ``-p pyxs.testing.pytest_plugin`` or in a ``conftest.py``
with ``pytest_plugins = ["pyxs.testing.pytest_plugin"]`` (when pyxs is
installed, its ``pytest11`` entry point does it for you).

``xenstore_server``
    A running :class:`~pyxs.testing.XenStoreServer`, fresh for each test.
``xenstore_client``
    A connected :class:`pyxs.client.Client` on that server, closed after
    the test.
``xenstore_guest_server``
    A running :class:`~pyxs.testing.XenStoreServer` that also serves a
    guest's XenBus device (:attr:`~pyxs.testing.XenStoreServer.xenbus_path`)
    for domain 1, whose home ``/local/domain/1`` exists and belongs to it.
    Needs Linux and root (or ``fusermount3``); skipped otherwise.
``xenstore_guest_client``
    A :class:`pyxs.client.Client` on that device: domain 1's view.
"""

import os
import tempfile
from typing import Iterator

import pytest

from ..client import Client
from . import XenStoreServer


@pytest.fixture
def xenstore_server() -> Iterator[XenStoreServer]:
    """A freshly started XenStore emulator, stopped after the test."""
    with XenStoreServer() as server:
        yield server


@pytest.fixture
def xenstore_client(xenstore_server: XenStoreServer) -> Iterator[Client]:
    """A :class:`pyxs.client.Client` connected to ``xenstore_server``."""
    client = Client(unix_socket_path=xenstore_server.socket_path)
    try:
        client.connect()
        yield client
    finally:
        client.close()


#: The domain the guest fixtures speak for.
GUEST_DOMID = 1


@pytest.fixture
def xenstore_guest_server() -> Iterator[XenStoreServer]:
    """An emulator serving domain 1's XenBus device too, with the home
    directory a toolstack would have made for it."""
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
    """A :class:`pyxs.client.Client` speaking as domain 1 through the
    XenBus device of ``xenstore_guest_server``."""
    client = Client(xen_bus_path=xenstore_guest_server.xenbus_path)
    try:
        client.connect()
        yield client
    finally:
        client.close()
