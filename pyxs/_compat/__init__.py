"""A stand-in for Xen's C extension module ``xen.lowlevel.xs``.

Programs written for the C extension switch to pyxs by changing one
import::

    import pyxs.compat as xs_module      # was: import xen.lowlevel.xs as xs_module

    handle = xs_module.xs()
    handle.write("", "/vm/1/name", "guest")

or, for the class alone, ``from pyxs import xs``.

This module copies the extension's interface as Xen 4.17 builds it for
Python 3, quirks included, because a stand-in is only useful if programs
cannot tell the difference:

* transaction handles are strings of upper-case hexadecimal digits, and
  ``""`` means "no transaction".  A handle is read the way the C code
  reads it (``strtoul`` in base 16), so a string that is not hexadecimal
  quietly means "no transaction".  As the one extension, the integer ``0``
  that old pyxs documentation passes is taken for ``""``;
* :meth:`xs.read`, :meth:`xs.ls` and :meth:`xs.get_domain_path` return
  ``None`` instead of raising when XenStore answers ``ENOENT`` (also when
  it is the *transaction* that does not exist); :meth:`xs.rm` ignores
  ``ENOENT``;
* a watch token may be any object: the token sent to XenStore is the
  object's identity, and events come back with the very same object;
* arguments are checked as the C argument parser checks them, with the
  same exception types and messages;
* every failure XenStore reports is an :exc:`Error` carrying
  ``(errno, strerror)``, with error names mapped to numbers as
  libxenstore maps them;
* once the connection fails, the handle stays broken (calls raise
  ``Error(EBADF)``), as libxenstore's does; it never reconnects behind
  the caller's back, since watches and transactions would silently be
  lost.

What cannot be the same is described in the documentation page
``docs/compat.rst``.
"""

import errno
import functools
import operator
import os
import select
import stat
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from ._cnumbers import ULONG_MAX, parse_perm, signed, strtol, strtoul
from ._internal import PAYLOAD_MAX, WIRE_ERRORS, Op, Packet, join_strings
from .client import Client
from .connection import (FileDescriptorConnection, UnixSocketConnection,
                         XenBusConnection, default_socket_path, default_xenbus_path)
from .exceptions import ConnectionError, InvalidPayload, PyXSError, Timeout

__all__ = ["xs", "Error"]

F = TypeVar("F", bound=Callable[..., Any])

#: What :meth:`xs.get_permissions` returns for one entry, and what
#: :meth:`xs.set_permissions` takes: ``{"dom": 5, "read": 1, "write": 2}``.
Permission = Dict[str, int]

#: A transaction handle: a hexadecimal string, ``""`` for none.
Handle = Union[str, int]


class Error(RuntimeError):
    """Raised for every failure of a XenStore request, as the C
    extension's ``xen.lowlevel.xs.Error`` is.

    ``args`` is ``(errno, strerror)``, for example
    ``(2, 'No such file or directory')``.
    """


def _error(code: int) -> Error:
    return Error(code, os.strerror(code))


def _errno_of_reply(payload: bytes) -> int:
    """The error number libxenstore gives for an ERROR reply: EINVAL for a
    name the protocol does not define (oxenstored's ``EQUOTA``, say),
    where :class:`pyxs.Client` reads ``EQUOTA`` as ``ENOSPC``."""
    return WIRE_ERRORS.get(payload.split(b"\0", 1)[0], errno.EINVAL)


def _errno_of_failure(failure: ConnectionError) -> int:
    """The error number for a failed connection: the operating system's
    when there is one, EBADF (libxenstore's choice for a connection the
    daemon closed) otherwise."""
    if isinstance(failure, Timeout):
        return errno.ETIMEDOUT
    cause = failure.__cause__
    # pyxs's own ConnectionError is an OSError too, but carries no errno.
    if isinstance(cause, OSError) and not isinstance(cause, PyXSError):
        return cause.errno or errno.EINVAL
    return errno.EBADF


# ----------------------------------------------------------------------
# How the C argument parser (PyArg_ParseTuple and friends) sees values.
# The messages are CPython 3.11's, word for word, so that programs and
# tests that look at them see no difference.

_MISSING = object()
_IMMUTABLETYPE = 1 << 8
_HEAPTYPE = 1 << 9


def _tp_name(kind: type) -> str:
    """The C-level name of a type (``tp_name``), which error messages of
    the C argument parser print.  Classes made by a ``class`` statement
    go by their bare name; types written in C carry their module in it
    (``collections.OrderedDict``, ``array.array``), unless they are
    built-ins."""
    python_class = kind.__flags__ & _HEAPTYPE and not kind.__flags__ & _IMMUTABLETYPE
    if python_class or kind.__module__ == "builtins":
        return kind.__name__
    return "%s.%s" % (kind.__module__, kind.__name__)


def _arg_type_name(value: object) -> str:
    """How a refused argument's type is named in "must be X, not Y"."""
    return "None" if value is None else _tp_name(type(value))


def _c_str(value: object, position: int) -> bytes:
    """Convert an argument as the ``s`` format does: a str without NUL,
    encoded as UTF-8."""
    if not isinstance(value, str):
        raise TypeError("argument %d must be str, not %s" % (position, _arg_type_name(value)))
    raw = value.encode("utf-8")
    if b"\0" in raw:
        raise ValueError("embedded null character")
    return raw


def _c_data(value: object, position: int) -> bytes:
    """Convert an argument as the ``s#`` format does: a str (as UTF-8,
    NULs allowed) or an immutable bytes object."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return bytes(value)
    try:
        memoryview(value)  # type: ignore[arg-type]
        has_buffer = True
    except TypeError:
        has_buffer = False
    if not has_buffer:
        raise TypeError("a bytes-like object is required, not '%s'" % _tp_name(type(value)))
    # Buffers that must be released after use (bytearray, memoryview,
    # array, ...) are refused: the C code could not hold on to them.
    raise TypeError("argument %d must be read-only bytes-like object, not %s"
                    % (position, _arg_type_name(value)))


def _c_long(value: object) -> int:
    """Convert an argument as the ``l`` format does (a C long)."""
    number = _index(value)
    if not -(1 << 63) <= number < (1 << 63):
        raise OverflowError("Python int too large to convert to C long")
    return number


def _c_int(value: object) -> int:
    """Convert an argument as the ``i`` format does (a C int)."""
    number = _c_long(value)
    if number > 0x7FFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    if number < -0x80000000:
        raise OverflowError("signed integer is less than minimum")
    return number


def _index(value: object) -> int:
    # operator.index() words its TypeError exactly as the C code does.
    return operator.index(value)  # type: ignore[arg-type]


def _exactly(args: Tuple[object, ...], count: int) -> None:
    """The argument count check of ``PyArg_ParseTuple``."""
    if len(args) != count:
        raise TypeError("function takes exactly %d argument%s (%d given)"
                        % (count, "" if count == 1 else "s", len(args)))


def _keywords(args: Tuple[object, ...], kwargs: Dict[Any, Any],
              names: Sequence[str], required: int,
              converters: Sequence[Callable[[object, int], object]]) -> List[object]:
    """Parse arguments as ``PyArg_ParseTupleAndKeywords`` does, checks in
    the same order; missing optional arguments come back as ``_MISSING``.
    *kwargs* is read with plain dict operations, as the C code reads it,
    whatever the dict's class overrides."""
    total, size = len(args) + dict.__len__(kwargs), len(names)
    if total > size:
        raise TypeError("function takes at most %d %sargument%s (%d given)"
                        % (size, "" if args else "keyword ", "" if size == 1 else "s", total))
    values: List[object] = [_MISSING] * size
    left = dict.__len__(kwargs)
    for i, name in enumerate(names):
        if i < len(args):
            value = args[i]
        elif left:
            value = dict.get(kwargs, name, _MISSING)
            if value is not _MISSING:
                left -= 1
        else:
            value = _MISSING
        if value is not _MISSING:
            values[i] = converters[i](value, i + 1)
            continue
        if i < required:
            raise TypeError("function missing required argument '%s' (pos %d)" % (name, i + 1))
        if not left:
            return values
    if left:
        for i in range(len(args)):
            if dict.__contains__(kwargs, names[i]):
                raise TypeError("argument for function given by name ('%s') and position (%d)"
                                % (names[i], i + 1))
        for key in dict.keys(kwargs):
            if not isinstance(key, str):
                raise TypeError("keywords must be strings")
            if key not in names:
                raise TypeError("'%s' is an invalid keyword argument for this function" % key)
    return values


def _varargs(method: F) -> F:
    """Give *method* the calling convention of a C method that takes
    positional arguments only: keywords are refused before anything else,
    then a closed handle, then the method checks its arguments."""
    name = method.__name__
    # Its positional parameters, read from the code object rather than
    # with inspect.signature: importing inspect would double pyxs's import time.
    count = method.__code__.co_argcount - 1  # Not counting self.

    @functools.wraps(method)
    def wrapper(self: "xs", *args: object, **kwargs: object) -> Any:
        if kwargs:
            raise TypeError("%s() takes no keyword arguments" % name)
        self._handle()
        _exactly(args, count)
        try:
            return method(self, *args)
        finally:
            self._sync()
    return wrapper  # type: ignore[return-value]


def _noargs(method: F) -> F:
    """Give *method* the calling convention of a C method that takes no
    arguments."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: "xs", *args: object, **kwargs: object) -> Any:
        if kwargs:
            raise TypeError("xs.%s() takes no keyword arguments" % name)
        if args:
            raise TypeError("xs.%s() takes no arguments (%d given)" % (name, len(args)))
        self._handle()
        try:
            return method(self)
        finally:
            self._sync()
    return wrapper  # type: ignore[return-value]


def _handle_number(transaction: object) -> int:
    """The transaction id a handle stands for, as the C code reads it."""
    if type(transaction) is int and transaction == 0:
        return 0  # pyxs's one extension: old documentation passes 0.
    return strtoul(_c_str(transaction, 1), 16) & 0xFFFFFFFF


def _wire_token(token: object) -> bytes:
    """The token sent to XenStore for a Python object: its address
    (``id()``), in decimal, printed as a signed C long."""
    return b"%d" % signed(id(token), 64)


def _parse_permissions(reply: bytes) -> List[Permission]:
    """Turn a GET_PERMS reply into dicts, as libxenstore and the
    extension do (``Error(EINVAL)`` for a malformed entry)."""
    result = []
    for entry in reply.split(b"\0")[:reply.count(b"\0")]:
        perm = parse_perm(entry)
        if perm is None:
            raise _error(errno.EINVAL)
        domid, access = perm
        result.append({"dom": signed(domid, 32), "read": access & 1, "write": access & 2})
    return result


# ----------------------------------------------------------------------
# The descriptor behind fileno().
#
# The C extension's fileno() is a pipe that libxenstore writes to when a
# watch event is queued; a reader thread of libxenstore's own queues the
# events as they arrive.  pyxs reads a connection with watches in a
# thread of its own too (the channel's drainer), but only while no call
# is reading it.  The descriptor handed out here is an epoll (Linux) or
# kqueue (BSD) instance watching two things at once:
#
# * the connection itself, readable as soon as XenStore sends anything;
# * a pipe that holds one byte while events wait in the queue: the
#   channel sets it as it queues an event, and every method of xs brings
#   it up to date before returning.
#
# Either makes the instance readable, so "readable" means exactly "an
# event is queued or on its way".  The one difference: readiness may also
# come from a reply that another thread of the same handle is about to
# read; a check_watch() then simply returns None.


class _Readiness:
    """A pollable descriptor for "watch events are waiting"."""

    def __init__(self, connection_fd: Optional[int]) -> None:
        self._lock = threading.Lock()
        self._flagged = False
        self._flag_r, self._flag_w = os.pipe()
        for fd in (self._flag_r, self._flag_w):
            os.set_blocking(fd, False)
        try:
            fds = [self._flag_r] + ([connection_fd] if connection_fd is not None else [])
            self._connection_fd = connection_fd
            if hasattr(select, "epoll"):
                self._poller: Any = select.epoll()
                for fd in fds:
                    self._poller.register(fd, select.EPOLLIN)
            elif hasattr(select, "kqueue"):
                self._poller = select.kqueue()
                # (Linux's typeshed has no kqueue: these lines run on BSD.)
                self._poller.control([select.kevent(fd, select.KQ_FILTER_READ,  # type: ignore[attr-defined]
                                                    select.KQ_EV_ADD)  # type: ignore[attr-defined]
                                      for fd in fds], 0)
            else:
                raise OSError(errno.ENOSYS, "neither epoll nor kqueue is available")
        except BaseException:
            os.close(self._flag_r)
            os.close(self._flag_w)
            raise

    def fileno(self) -> int:
        fd: int = self._poller.fileno()
        return fd

    def update(self, pending: Callable[[], bool]) -> None:
        """Make the flag pipe readable exactly while ``pending()`` is
        true (asked with the lock held, so that the last update wins)."""
        with self._lock:
            if pending():
                if not self._flagged:
                    os.write(self._flag_w, b"!")
                    self._flagged = True
            elif self._flagged:
                os.read(self._flag_r, 1)
                self._flagged = False

    def forget_connection(self) -> None:
        """Stop watching the connection (it is closed or failed)."""
        fd, self._connection_fd = self._connection_fd, None
        if fd is None:
            return
        try:
            if hasattr(select, "epoll") and isinstance(self._poller, select.epoll):
                self._poller.unregister(fd)
            else:
                self._poller.control([select.kevent(fd, select.KQ_FILTER_READ,  # type: ignore[attr-defined]
                                                    select.KQ_EV_DELETE)], 0)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            pass  # Closing the descriptor has already removed it.

    def close(self) -> None:
        self._poller.close()
        os.close(self._flag_r)
        os.close(self._flag_w)


def _open_client() -> Client:
    """Connect as libxenstore's ``xs_open(0)`` does: the daemon's socket
    path first (a socket if it is one, else opened like a device), then
    the XenBus device.

    :raises Error: with the error of the last attempt.
    """
    code = errno.ENOENT
    for path in (default_socket_path(), default_xenbus_path()):
        try:
            is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError as e:
            code = e.errno or errno.ENOENT
            continue
        connection: FileDescriptorConnection = (
            UnixSocketConnection(path) if is_socket else XenBusConnection(path))
        client = Client(connection=connection)
        try:
            client.connect()
        except ConnectionError as e:
            code = _errno_of_failure(e)
            client.close()
            continue
        return client
    raise _error(code)


class xs:  # noqa: N801 - the C extension's name
    """A connection to XenStore with the interface of the C extension's
    ``xen.lowlevel.xs.xs``.

    The connection is made at once, found as libxenstore finds it
    (``XENSTORED_PATH``, then ``$XENSTORED_RUNDIR/socket`` or
    ``/var/run/xenstored/socket``, then the XenBus device).  Requests,
    replies and watch events all go over this one connection.  Every
    method may be called from several threads.

    :param readonly: accepted and ignored, as by the C extension (Xen no
        longer has read-only connections).
    :raises Error: when XenStore cannot be reached.
    :raises SystemError: for arguments the C extension's parser would
        refuse.  (The C extension turns such a :exc:`TypeError` into a
        :exc:`SystemError`, by raising its own error on top of it; so
        does this class, with the :exc:`TypeError` as the cause.)
    """

    __slots__ = ("_client", "_generation", "_lock", "_tokens", "_dead", "_readiness",
                 "__weakref__")
    _client: Optional[Client]  # None: closed (or never opened).
    _generation: int
    _lock: threading.Lock
    # The watch tokens, in the C extension's layout: a list whose free
    # slots hold None, searched by identity.
    _tokens: List[object]
    _dead: bool
    _readiness: Optional[_Readiness]

    def __init_subclass__(cls, **kwargs: object) -> None:
        # The C type cannot be subclassed either.
        raise TypeError("type 'pyxs._compat.xs' is not an acceptable base type")

    def __new__(cls, *args: object, **kwargs: object) -> "xs":
        self = super().__new__(cls)
        self._client = None
        self._generation = 0
        self._lock = threading.Lock()
        self._tokens = []
        self._dead = False
        self._readiness = None
        return self

    def __init__(self, *args: object, **kwargs: object) -> None:
        try:
            _keywords(args, kwargs, ("readonly",), 0, (lambda v, i: _c_int(v),))
        except (TypeError, OverflowError) as e:
            raise SystemError("%r returned a result with an exception set" % (Error,)) from e
        client = _open_client()
        channel = client._channel
        self._generation = channel.generation
        # Like libxenstore, a handle does not outlive its connection.
        channel.restore_watches = False
        # A weak reference: the channel's drainer must not keep us alive.
        handle = weakref.ref(self)

        def event_queued() -> None:
            this = handle()
            if this is not None and this._readiness is not None:
                this._readiness.update(lambda: True)
        channel.on_event = event_queued
        self._client = client

    def __del__(self) -> None:
        try:
            if self._client is not None:
                self._shut()
        except Exception:
            pass  # Nothing useful can be done while being collected.

    # Plumbing.

    def _handle(self) -> Client:
        """The client, or ``Error(EINVAL)`` once the handle is closed."""
        client = self._client
        if client is None:
            raise _error(errno.EINVAL)
        return client

    def _sync(self) -> None:
        """Bring the fileno() descriptor up to date with the event queue
        (every public method does this last)."""
        readiness, client = self._readiness, self._client
        if readiness is not None and client is not None:
            events = client._channel.events
            readiness.update(lambda: bool(events))

    def _die(self) -> None:
        """The connection failed: it will not be used again."""
        self._dead = True
        if self._readiness is not None:
            self._readiness.forget_connection()

    def _request(self, op: Op, payload: bytes, tx_id: int = 0) -> bytes:
        """Send one request and return the reply's payload.

        :raises Error: for an error reply, a request too large (E2BIG) or
            a failed connection.
        """
        if len(payload) > PAYLOAD_MAX:
            raise _error(errno.E2BIG)
        if self._dead:
            raise _error(errno.EBADF)
        channel = self._handle()._channel
        slot = None
        # (Errors are raised outside the except clauses, so that the
        # library's exceptions do not linger as __context__.)
        try:
            # Pinned to the first connection: should it fail, the channel
            # must not quietly open another one for this handle.
            slot = channel.submit([(op, payload)], tx_id, self._generation)[0]
            return channel.result(slot)
        except InvalidPayload:
            code = errno.E2BIG
        except ConnectionError as e:
            self._die()
            code = _errno_of_failure(e)
        except PyXSError as e:
            reply: Optional[Packet] = slot.reply if slot is not None else None
            if reply is not None and reply.op is Op.ERROR:
                code = _errno_of_reply(reply.payload)
            else:
                code = e.errno or errno.EINVAL
        raise _error(code)

    def _next_event(self, timeout: Optional[float]) -> Optional[Packet]:
        """Take the next queued or arriving event, waiting up to *timeout*
        seconds (for ever when None); ``Error(EINVAL)`` when the
        connection is gone and nothing is queued, as in libxenstore."""
        client = self._handle()
        channel = client._channel
        if self._dead and not channel.events:
            raise _error(errno.EINVAL)
        try:
            packet = channel.next_event(timeout)
            if timeout == 0:
                # A message may have arrived in part (C xenstored writes
                # header and payload separately), waking select() on
                # fileno().  As libxenstore does when it must not block,
                # finish reading a message once it has started.
                deadline = time.monotonic() + client.connection.timeout
                while (packet is None and channel._decoder.pending
                       and time.monotonic() < deadline):
                    packet = channel.next_event(0.01)
            return packet
        except ConnectionError:
            self._die()
        raise _error(errno.EINVAL)

    def _match(self, packet: Packet) -> Tuple[str, object]:
        """Find the token object of an event.

        :raises Error: EINVAL when the token is not a number, EAGAIN when
            it belongs to no current watch (an event still in flight for a
            watch that has been removed).
        """
        path, token = packet.payload.split(b"\0")[:2]
        value, end = strtol(token, 0)  # sscanf("%li")
        if not end:
            raise _error(errno.EINVAL)
        address = value & ULONG_MAX
        with self._lock:
            for candidate in self._tokens:
                if id(candidate) == address:
                    return path.decode("utf-8"), candidate
        raise _error(errno.EAGAIN)

    def _forget_token(self, token: object) -> None:
        with self._lock:
            for i, candidate in enumerate(self._tokens):
                if candidate is token:
                    self._tokens[i] = None
                    return

    def _shut(self) -> None:
        client, self._client = self._client, None
        with self._lock:
            self._tokens[:] = [None] * len(self._tokens)
        if client is not None:
            client.close()
        if self._readiness is not None:
            self._readiness.close()
            self._readiness = None

    # Nodes.

    @_varargs
    def read(self, transaction: Handle, path: str, /) -> Optional[bytes]:
        """Read a node's value.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node, absolute or relative to ``/local/domain/0``.
        :returns: the value's bytes, or None when XenStore answers
            ``ENOENT`` (the node, or the transaction, does not exist).
        :raises Error: for any other failure.
        """
        tx_id = _handle_number(transaction)
        raw = _c_str(path, 2)
        try:
            return self._request(Op.READ, raw + b"\0", tx_id)
        except Error as e:
            if e.args[0] == errno.ENOENT:
                return None
            raise

    @_varargs
    def write(self, transaction: Handle, path: str, data: Union[str, bytes], /) -> None:
        """Set a node's value, creating it and missing parents.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :param data: the value: bytes, or a str (stored as UTF-8).
        :raises Error: when XenStore refuses (``E2BIG`` when the request
            is over XenStore's size limit).
        """
        tx_id = _handle_number(transaction)
        raw = _c_str(path, 2)
        value = _c_data(data, 3)
        self._request(Op.WRITE, raw + b"\0" + value, tx_id)

    @_varargs
    def ls(self, transaction: Handle, path: str, /) -> Optional[List[str]]:
        """List a node's children (in the daemon's order).  Lists too
        long for one reply are fetched in parts, as libxenstore does.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :returns: the children's names, or None when XenStore answers
            ``ENOENT``.
        :raises Error: for any other failure.
        """
        tx_id = _handle_number(transaction)
        raw = _c_str(path, 2)
        try:
            listing = self._list(raw, tx_id)
        except Error as e:
            if e.args[0] == errno.ENOENT:
                return None
            raise
        return [name.decode("utf-8") for name in listing.split(b"\0")[:listing.count(b"\0")]]

    def _list(self, raw_path: bytes, tx_id: int) -> bytes:
        try:
            return self._request(Op.DIRECTORY, raw_path + b"\0", tx_id)
        except Error as e:
            if e.args[0] != errno.E2BIG:
                raise
        return self._list_in_parts(raw_path, tx_id)

    def _list_in_parts(self, raw_path: bytes, tx_id: int) -> bytes:
        # libxenstore's algorithm: ask from byte offset `offset` of the
        # listing; each part starts with the directory's generation, and
        # the whole listing ends with an extra NUL.  A generation that
        # changes between parts means the directory changed: start over.
        names, offset, generation = b"", 0, b""
        while True:
            try:
                part = self._request(Op.DIRECTORY_PART,
                                     raw_path + b"\0" + b"%d\0" % offset, tx_id)
            except Error as e:
                if e.args[0] != errno.ENOSYS:
                    raise
                part = None  # No paging in this daemon: the list is too long.
            if part is None:
                raise _error(errno.E2BIG)
            head = part.split(b"\0", 1)[0]
            if offset:
                if head != generation:
                    names, offset = b"", 0
                    continue
            else:
                generation = head[:23]
            names = names[:offset] + part[len(head) + 1:]
            offset = len(names)
            if offset <= 1 or names[offset - 2] == 0:
                break
        return names[:offset - 1] if offset > 1 else names[:offset]

    @_varargs
    def mkdir(self, transaction: Handle, path: str, /) -> None:
        """Create a node (and missing parents) with an empty value; an
        existing node is left as it is.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :raises Error: when XenStore refuses.
        """
        tx_id = _handle_number(transaction)
        self._request(Op.MKDIR, _c_str(path, 2) + b"\0", tx_id)

    @_varargs
    def rm(self, transaction: Handle, path: str, /) -> None:
        """Remove a node and everything below it.  ``ENOENT`` is not an
        error.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :raises Error: for any failure but ``ENOENT``.
        """
        tx_id = _handle_number(transaction)
        try:
            self._request(Op.RM, _c_str(path, 2) + b"\0", tx_id)
        except Error as e:
            if e.args[0] != errno.ENOENT:
                raise

    @_varargs
    def get_permissions(self, transaction: Handle, path: str, /) -> List[Permission]:
        """Return a node's permissions, the owner first, each as a dict
        ``{"dom": domid, "read": 0 or 1, "write": 0 or 2}``.  (``write``
        is 2, not 1, when set: the C extension hands out libxenstore's
        bit.)  The owner's entry gives the access of domains not listed.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :raises Error: for any failure, ``ENOENT`` included.
        """
        tx_id = _handle_number(transaction)
        raw = _c_str(path, 2)
        return _parse_permissions(self._request(Op.GET_PERMS, raw + b"\0", tx_id))

    @_varargs
    def set_permissions(self, transaction: Handle, path: str,
                        perms: List[Permission], /) -> None:
        """Replace a node's permissions.

        Each entry is a dict with ``dom`` (required), and ``read`` and
        ``write`` (optional, any true value grants); the first entry is
        the owner.  As in the C extension, when the first entry grants
        some access to a domain other than 0, that domain cannot be meant
        as the owner: an owner entry for domain 0 with no access is put
        in front of the list.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :param perms: the entries, as a :class:`list` (other sequences
            are refused with ``Error(EINVAL)``).
        :raises Error: when XenStore refuses (``EINVAL`` for an empty
            list).
        :raises TypeError: for an entry the C argument parser refuses.
        :raises SystemError: for an entry that is not a dict (the C
            extension's parser reports it that way).
        """
        tx_id = _handle_number(transaction)
        raw = _c_str(path, 2)
        if not isinstance(perms, list):
            raise _error(errno.EINVAL)
        entries: List[Tuple[int, int]] = []
        for i in range(list.__len__(perms)):
            entry = list.__getitem__(perms, i)
            if not isinstance(entry, dict):
                raise SystemError("bad argument to internal function")
            dom, read, write = _keywords((), entry, ("dom", "read", "write"), 1,
                                         [lambda v, i: _c_int(v)] * 3)
            access = ((1 if read is not _MISSING and read else 0)
                      | (2 if write is not _MISSING and write else 0))
            entries.append((dom, access))  # type: ignore[arg-type]
        if entries and entries[0][1] and entries[0][0]:
            entries.insert(0, (0, 0))
        strings = [b"%s%d" % (b"nrwb"[access:access + 1], dom) for dom, access in entries]
        self._request(Op.SET_PERMS, raw + b"\0" + b"".join(s + b"\0" for s in strings), tx_id)

    # Watches.

    @_varargs
    def watch(self, path: str, token: object, /) -> None:
        """Watch a node and everything below it.

        XenStore sends one event at once, and one for every later change;
        :meth:`read_watch` and :meth:`check_watch` hand them out.  The
        token may be any object; the handle keeps a reference to it, and
        events come back with that same object.

        :param path: the node, or a special path such as
            ``@introduceDomain``.
        :param token: any object.
        :raises Error: when XenStore refuses (``EEXIST`` when the same
            path is already watched with the same object).
        """
        raw = _c_str(path, 1)
        # Record the token before XenStore may send events for it.
        with self._lock:
            for i, candidate in enumerate(self._tokens):
                if candidate is None:
                    self._tokens[i] = token
                    break
            else:
                self._tokens.append(token)
        watch = (raw, _wire_token(token))
        try:
            self._request(Op.WATCH, join_strings(*watch))
        except Error:
            self._forget_token(token)
            raise
        # From now on the connection is drained (see _Readiness).
        self._handle()._channel.add_watch(watch)

    @_varargs
    def unwatch(self, path: str, token: object, /) -> None:
        """Remove a watch made with the same path and the same object.

        As in the C extension, the handle lets go of one reference to
        *token* even when XenStore refuses; events still queued for the
        token are then skipped by :meth:`read_watch` (and make
        :meth:`check_watch` raise ``Error(EAGAIN)``) unless the token is
        still in use by another watch.

        :raises Error: when XenStore refuses (``ENOENT`` for an unknown
            watch).
        """
        watch = (_c_str(path, 1), _wire_token(token))
        try:
            self._request(Op.UNWATCH, join_strings(*watch))
            # The C extension has no unwatch filter: queued events stay.
            self._handle()._channel.remove_watch(watch, drop_events=False)
        finally:
            self._forget_token(token)

    @_noargs
    def read_watch(self) -> Tuple[str, object]:
        """Wait for the next watch event and return ``(path, token)``,
        *token* being the object given to :meth:`watch`.  Events of
        watches removed meanwhile are skipped.  Waits for ever, also when
        there is no watch.

        :raises Error: ``EINVAL`` when the connection has failed and no
            event is left.
        """
        while True:
            packet = self._next_event(None)
            try:
                return self._match(packet)  # type: ignore[arg-type]
            except Error as e:
                if e.args[0] != errno.EAGAIN:
                    raise

    @_noargs
    def check_watch(self) -> Optional[Tuple[str, object]]:
        """Return the next watch event, ``(path, token)``, if one has
        arrived, else None, without waiting.

        :raises Error: ``EAGAIN`` when the event taken belongs to a watch
            removed meanwhile (the event is dropped; the C extension does
            the same); ``EINVAL`` when the connection has failed and no
            event is left.
        """
        packet = self._next_event(0)
        return None if packet is None else self._match(packet)

    @_noargs
    def fileno(self) -> int:
        """Return a descriptor that polls readable while watch events are
        waiting, for :func:`select.select` and friends.  It stays the
        same for the life of the handle and is closed by :meth:`close`.
        (See the comment above ``_Readiness`` for how it works.)"""
        client = self._handle()
        with self._lock:
            if self._readiness is None:
                try:
                    self._readiness = _Readiness(
                        None if self._dead else client.connection.fd)
                except OSError:
                    return -1  # The C extension's answer when it has no pipe.
        return self._readiness.fileno()

    # Transactions.

    @_noargs
    def transaction_start(self) -> str:
        """Start a transaction.

        :returns: its handle, the id in upper-case hexadecimal.
        :raises Error: when XenStore refuses.
        """
        reply = self._request(Op.TRANSACTION_START, b"\0")
        tx_id = strtoul(reply.split(b"\0", 1)[0], 0) & 0xFFFFFFFF
        if not tx_id:
            raise _error(errno.EINVAL)
        return "%X" % tx_id

    def transaction_end(self, *args: object, **kwargs: object) -> bool:
        """transaction_end(transaction, abort=0)

        End a transaction, committing its changes, or dropping them when
        *abort* is true.

        :param transaction: the handle :meth:`transaction_start` gave.
        :param abort: non-zero to abort.
        :returns: True when done; False when the commit conflicted with
            another change (``EAGAIN``): nothing was committed, and the
            caller should do the whole transaction again.
        :raises Error: for any other failure (``ENOENT`` for an unknown
            transaction).
        """
        self._handle()
        try:
            transaction, abort = _keywords(args, kwargs, ("transaction", "abort"), 1,
                                           (_c_str, lambda v, i: _c_int(v)))
            tx_id = strtoul(transaction, 16) & 0xFFFFFFFF  # type: ignore[arg-type]
            flag = b"F\0" if abort is not _MISSING and abort else b"T\0"
            try:
                self._request(Op.TRANSACTION_END, flag, tx_id)
            except Error as e:
                if e.args[0] == errno.EAGAIN:
                    return False
                raise
            return True
        finally:
            self._sync()

    # Domains.

    @_varargs
    def introduce_domain(self, dom: int, page: int, port: int, /) -> None:
        """Tell XenStore about a new domain, its XenStore page (machine
        frame number) and event channel.

        :raises Error: when XenStore refuses.
        """
        domid, frame, channel = _c_int(dom), _c_long(page), _c_int(port)
        self._request(Op.INTRODUCE, b"%d\0%d\0%d\0" % (
            domid & 0xFFFFFFFF, frame & ULONG_MAX, channel & 0xFFFFFFFF))

    @_varargs
    def set_target(self, dom: int, target: int, /) -> None:
        """Let domain *dom* act for domain *target* (a device model's
        privilege).

        :raises Error: when XenStore refuses.
        """
        domid, target_id = _c_int(dom), _c_int(target)
        self._request(Op.SET_TARGET, b"%d\0%d\0" % (domid & 0xFFFFFFFF,
                                                   target_id & 0xFFFFFFFF))

    @_varargs
    def resume_domain(self, dom: int, /) -> None:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again.

        :raises Error: when XenStore refuses.
        """
        self._request(Op.RESUME, b"%d\0" % (_c_int(dom) & 0xFFFFFFFF))

    @_varargs
    def release_domain(self, dom: int, /) -> None:
        """Tell XenStore to forget a domain.

        :raises Error: when XenStore refuses.
        """
        self._request(Op.RELEASE, b"%d\0" % (_c_int(dom) & 0xFFFFFFFF))

    @_varargs
    def get_domain_path(self, domid: int, /) -> Optional[str]:
        """Return a domain's home path, ``/local/domain/<domid>``, whether
        or not the domain exists.

        :returns: the path, or None when XenStore answers ``ENOENT``.
        :raises Error: for any other failure.
        """
        number = _c_int(domid)
        try:
            reply = self._request(Op.GET_DOMAIN_PATH, b"%d\0" % (number & 0xFFFFFFFF))
        except Error as e:
            if e.args[0] == errno.ENOENT:
                return None
            raise
        return reply.split(b"\0", 1)[0].decode("utf-8")

    @_noargs
    def close(self) -> None:
        """Close the connection.  Every later call, close() included,
        raises ``Error(EINVAL)``.  XenStore drops the handle's watches and
        aborts its open transactions."""
        self._shut()
