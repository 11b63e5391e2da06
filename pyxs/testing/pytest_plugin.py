"""pytest fixtures for code that talks to XenStore.

Enable them with ``-p pyxs.testing.pytest_plugin`` or in a ``conftest.py``
with ``pytest_plugins = ["pyxs.testing.pytest_plugin"]`` (when pyxs is
installed, its ``pytest11`` entry point does it for you).

``xenstore_server``
    A running :class:`~pyxs.testing.XenStoreServer`, fresh for each test.
``xenstore_client``
    A connected :class:`pyxs.client.Client` on that server, closed after
    the test.
"""

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
