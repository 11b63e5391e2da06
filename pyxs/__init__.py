"""pyxs: a pure-Python client for XenStore, Xen's configuration and
status tree.

>>> from pyxs import Client
>>> with Client(unix_socket_path=socket_path) as c:
...     c["/vm/1/name"] = "guest"
...     c["/vm/1/name"]
'guest'
"""

from ._compat import xs
from ._internal import Event, Op, Packet
from .client import Client, Monitor
from .connection import UnixSocketConnection, XenBusConnection
from .exceptions import (ConnectionError, EventsDropped, InvalidOperation, InvalidPath,
                         InvalidPayload, InvalidPermission, PyXSError, Timeout, UnexpectedPacket)

__all__ = [
    "Client", "Monitor", "UnixSocketConnection", "XenBusConnection", "Event", "Op", "Packet",
    "PyXSError", "InvalidOperation", "InvalidPayload", "InvalidPath", "InvalidPermission",
    "ConnectionError", "UnexpectedPacket", "Timeout", "EventsDropped", "xs",
]

__version__ = "0.5.0"
