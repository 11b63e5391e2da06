"""The exceptions pyxs raises.

Everything pyxs raises on purpose derives from :exc:`PyXSError`, so one
``except PyXSError`` clause catches every failure of the library.  Errors
about the caller's input are also :exc:`ValueError`, and are always raised
before anything has been sent to XenStore.
"""

from __future__ import annotations

import builtins
from typing import Optional

__all__ = [
    "PyXSError",
    "InvalidOperation",
    "InvalidPayload",
    "InvalidPath",
    "InvalidPermission",
    "ConnectionError",
    "UnexpectedPacket",
    "Timeout",
    "EventsDropped",
]


class PyXSError(Exception):
    """Base class of every pyxs exception.

    When XenStore itself refuses a request, the exception carries the
    error the daemon reported, like :exc:`OSError` does::

        PyXSError(errno.ENOENT, "No such file or directory")

    :ivar errno: the error number, or ``None`` when the failure did not
        come from XenStore (a broken connection, for example).
    :ivar strerror: the error message that goes with :attr:`errno`.
    """

    # Class defaults, for the subclasses that are ValueError first (whose
    # __init__ does not come here); they also hide OSError's own errno
    # and strerror on ConnectionError, which reads its arguments otherwise.
    errno: Optional[int] = None
    strerror: Optional[str] = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if len(args) == 2 and isinstance(args[0], int):
            self.errno, self.strerror = args[0], str(args[1])


class InvalidOperation(ValueError, PyXSError):
    """An operation code that is not one of :class:`pyxs.protocol.Op`."""


class InvalidPayload(ValueError, PyXSError):
    """A packet payload over the protocol's limit of 4096 bytes, or of a
    type that cannot be sent."""


class InvalidPath(ValueError, PyXSError):
    """A path XenStore would refuse.

    A valid path is non-empty, uses only ASCII letters, digits and the
    characters ``-/_@``, has no ``//`` and no trailing ``/`` (the root
    ``/`` aside), and is at most 3072 bytes long when absolute or 2048
    bytes when relative.  The special paths ``@introduceDomain`` and
    ``@releaseDomain`` are only valid where a watch path is expected.
    The message says which of these rules the path breaks:

    >>> from pyxs.helpers import validate_path
    >>> validate_path("/vm/my guest")
    Traceback (most recent call last):
      ...
    pyxs.exceptions.InvalidPath: invalid path '/vm/my guest': ' ' is not allowed ...

    .. versionchanged:: 0.5.0
       The message says which rule the path breaks.
    """


class InvalidPermission(ValueError, PyXSError):
    """A permission entry not of the form ``<letter><domid>``, where the
    letter is ``r`` (read), ``w`` (write), ``b`` (both) or ``n`` (none)
    and the domain id is a decimal number, for example ``"r5"``."""


class ConnectionError(PyXSError, builtins.ConnectionError):  # noqa: A001 - the documented name
    """The conversation with XenStore failed: it could not be opened,
    it broke, or the daemon broke the protocol.  Every call that was
    waiting on the connection fails with it; the client connects again
    on its next call.

    It is also Python's own :exc:`builtins.ConnectionError` (and so an
    :exc:`OSError`), so that ``except ConnectionError:`` catches it in
    code that never imports pyxs's exceptions:

    >>> import builtins, pyxs
    >>> issubclass(pyxs.ConnectionError, builtins.ConnectionError)
    True

    .. versionchanged:: 0.5.0
       Also a :exc:`builtins.ConnectionError`.
    """

    # The message alone, as for every pyxs error, rather than OSError's
    # "[Errno N] ..." form.
    __str__ = Exception.__str__


class UnexpectedPacket(ConnectionError):
    """XenStore sent something the protocol does not allow here: a reply
    to a request nobody made, a reply of the wrong type, or a malformed
    frame."""


class Timeout(ConnectionError, builtins.TimeoutError):
    """XenStore did not answer within the connection's timeout.  The
    connection is closed, since its later replies could not be trusted.

    It is also Python's own :exc:`TimeoutError`.

    .. versionadded:: 0.5.0
    """


class EventsDropped(PyXSError):
    """Watch events arrived faster than the program took them, and more
    were waiting than the bound it set (``max_queued_events``), so some
    were dropped.  The connection and the watches are fine, and the
    events still queued come next; but the program no longer knows every
    change, and should read again what it watches.

    :ivar count: how many events were dropped.
    :ivar limit: the bound that was exceeded.

    .. versionadded:: 0.5.0
    """

    def __init__(self, count: int, limit: Optional[int]) -> None:
        super().__init__("%d watch event(s) were dropped: more than %s were waiting to be "
                         "taken; read again what is watched" % (count, limit))
        self.count = count
        self.limit = limit
