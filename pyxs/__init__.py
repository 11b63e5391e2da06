"""pyxs: a pure-Python client for XenStore, Xen's configuration and
status tree.

>>> from pyxs import Client
>>> with Client(unix_socket_path=socket_path) as c:
...     c["/vm/1/name"] = "guest"
...     c["/vm/1/name"]
'guest'
"""

from typing import TYPE_CHECKING, Any

from ._internal import Event, Op, Packet
from .client import Client, Monitor
from .connection import UnixSocketConnection, XenBusConnection
from .exceptions import (ConnectionError, EventsDropped, InvalidOperation, InvalidPath,
                         InvalidPayload, InvalidPermission, PyXSError, Timeout, UnexpectedPacket)
from .helpers import warn_deprecated

if TYPE_CHECKING:
    from .compat import xs

__all__ = [
    "Client", "Monitor", "UnixSocketConnection", "XenBusConnection", "Event", "Op", "Packet",
    "PyXSError", "InvalidOperation", "InvalidPayload", "InvalidPath", "InvalidPermission",
    "ConnectionError", "UnexpectedPacket", "Timeout", "EventsDropped", "xs",
]

__version__ = "0.5.0"


def __getattr__(name: str) -> object:
    # The xen.lowlevel.xs stand-in is imported on first use only: most
    # programs never need it, and it would double the cost of "import pyxs".
    if name == "xs":
        from .compat import xs
        return xs
    # Names pyxs 0.4 exported here.
    if name == "Error":
        from .compat import Error
        warn_deprecated("pyxs.Error", "pyxs.compat.Error")
        return Error
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def monitor(*args: Any, **kwargs: Any) -> Monitor:
    """Deprecated: a :class:`Monitor` on a connection made as
    ``Client(*args, **kwargs)`` would make it, for ``with pyxs.monitor()
    as m:`` as pyxs 0.4 had it.

    .. deprecated:: 0.5.0
       Use ``Client(...).monitor()``.
    """
    warn_deprecated("pyxs.monitor()", "pyxs.Client(...).monitor()")
    return Client(*args, **kwargs).monitor()
