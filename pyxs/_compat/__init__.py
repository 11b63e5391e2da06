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

The handle talks to XenStore through a :class:`pyxs._channel.Channel` of
its own, which hands back reply packets; this module applies
libxenstore's reading of them (:func:`pyxs._internal.libxenstore_errno`).
How the C argument parser checks arguments is in :mod:`._cargs`, the
descriptor behind :meth:`xs.fileno` in :mod:`._readiness`.  The C
extension this copies is ``tools/python/xen/lowlevel/xs/xs.c`` in Xen's
sources, over libxenstore (``tools/libs/store/xs.c``).
"""

import errno
import functools
import os
import stat
import threading
import time
import weakref
from typing import (Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union,
                    overload)

from .._channel import Channel
from .._cnumbers import PERM_LETTERS, ULONG_MAX, parse_perm, signed, strtol, strtoul, u32
from .._internal import PAYLOAD_MAX, Op, join_strings, libxenstore_errno, split_strings
from ..connection import (FileDescriptorConnection, UnixSocketConnection,
                          XenBusConnection, default_socket_path, default_xenbus_path)
from ..exceptions import ConnectionError, InvalidPayload, PyXSError, Timeout
from ._cargs import (MISSING, c_data, c_int, c_long, c_str, exactly, keywords, no_arguments,
                     refuse_keywords)
from ._readiness import Readiness

__all__ = ["xs", "Error"]

F = TypeVar("F", bound=Callable[..., Any])

#: What :meth:`xs.get_permissions` returns for one entry, and what
#: :meth:`xs.set_permissions` takes: ``{"dom": 5, "read": 1, "write": 2}``.
Permission = Dict[str, int]

#: A transaction handle: a hexadecimal string, ``""`` for none.
Handle = Union[str, int]

# The error numbers for which some methods answer None instead of raising.
_ABSENT = (errno.ENOENT,)


class Error(RuntimeError):
    """Raised for every failure of a XenStore request, as the C
    extension's ``xen.lowlevel.xs.Error`` is.

    ``args`` is ``(errno, strerror)``, for example
    ``(2, 'No such file or directory')``.
    """


def _error(code: int) -> Error:
    return Error(code, os.strerror(code))


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


def _reply_string(payload: bytes) -> bytes:
    """A reply read as libxenstore reads a single string: up to the first
    NUL, all of it if there is none."""
    return payload.split(b"\0", 1)[0]


# The C method calling conventions.  CPython checks some arguments before
# the C function runs; the extension's functions then check the handle
# (xshandle() in xs.c) before parsing their arguments.

def _c_method(method: F, check_call: Callable[[Tuple[object, ...], Dict[str, object]], None],
              parse: Callable[[Tuple[object, ...]], None]) -> F:
    """Give *method* a C method's order of checks: *check_call* (CPython's
    checks of the call), the handle, *parse* (the function's own), then
    the method; last, whatever happened, the :meth:`xs.fileno`
    descriptor is brought up to date."""

    @functools.wraps(method)
    def wrapper(self: "xs", *args: object, **kwargs: object) -> Any:
        check_call(args, kwargs)
        self._require_open()
        parse(args)
        try:
            return method(self, *args, **kwargs)
        finally:
            self._sync()
    return wrapper  # type: ignore[return-value]


def _unchecked(*args: object) -> None:
    pass


def _noargs(method: F) -> F:
    """A ``METH_NOARGS`` method."""
    name = "xs." + method.__name__

    def check_call(args: Tuple[object, ...], kwargs: Dict[str, object]) -> None:
        refuse_keywords(name, kwargs)
        no_arguments(name, args)
    return _c_method(method, check_call, _unchecked)


def _varargs(method: F) -> F:
    """A ``METH_VARARGS`` method whose C function takes as many
    positional arguments as *method* (``PyArg_ParseTuple``); *method*
    converts them itself, in order."""
    name = method.__name__
    # Read from the code object rather than with inspect.signature:
    # importing inspect would double pyxs's import time.
    count = method.__code__.co_argcount - 1  # Not counting self.
    return _c_method(method, lambda args, kwargs: refuse_keywords(name, kwargs),
                     lambda args: exactly(args, count))


def _varkwargs(method: F) -> F:
    """A ``METH_VARARGS | METH_KEYWORDS`` method: *method* parses its
    arguments itself (``PyArg_ParseTupleAndKeywords``, see
    :func:`._cargs.keywords`)."""
    return _c_method(method, _unchecked, _unchecked)


def _transaction_id(transaction: object, position: int) -> int:
    """The transaction id a handle stands for, as the C code reads it."""
    if type(transaction) is int and transaction == 0:
        return 0  # pyxs's one extension: old documentation passes 0.
    return u32(strtoul(c_str(transaction, position), 16))


def _node_args(transaction: object, path: object) -> Tuple[int, bytes]:
    """The ``(transaction, path)`` arguments the node methods open with,
    as ``(transaction id, path bytes)``."""
    return _transaction_id(transaction, 1), c_str(path, 2)


def _wire_token(token: object) -> bytes:
    """The token sent to XenStore for a Python object: its address
    (``id()``), in decimal, printed as a signed C long."""
    return b"%d" % signed(id(token), 64)


def _parse_permissions(reply: bytes) -> List[Permission]:
    """Turn a GET_PERMS reply into dicts, as libxenstore and the
    extension do (``Error(EINVAL)`` for a malformed entry)."""
    result = []
    for entry in split_strings(reply):
        perm = parse_perm(entry)
        if perm is None:
            raise _error(errno.EINVAL)
        domid, access = perm
        result.append({"dom": signed(domid, 32), "read": access & 1, "write": access & 2})
    return result


def _open_channel() -> Channel:
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
        channel = Channel(connection)
        try:
            channel.connect()
        except ConnectionError as e:
            code = _errno_of_failure(e)
            channel.close()
            continue
        return channel
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

    __slots__ = ("_channel", "_generation", "_lock", "_tokens", "_failed", "_readiness",
                 "__weakref__")
    _channel: Optional[Channel]  # None: closed (or never opened).
    _generation: int
    _lock: threading.Lock
    # The watch tokens, in the C extension's layout: a list whose free
    # slots hold None, searched by identity.
    _tokens: List[object]
    # The connection failed: the handle stays broken, as libxenstore's.
    _failed: bool
    _readiness: Optional[Readiness]

    def __init_subclass__(cls, **kwargs: object) -> None:
        # The C type cannot be subclassed either.
        raise TypeError("type 'pyxs._compat.xs' is not an acceptable base type")

    def __new__(cls, *args: object, **kwargs: object) -> "xs":
        # Ready for __del__ even when __init__ fails, as the C object is.
        self = super().__new__(cls)
        self._channel = None
        self._generation = 0
        self._lock = threading.Lock()
        self._tokens = []
        self._failed = False
        self._readiness = None
        return self

    def __init__(self, *args: object, **kwargs: object) -> None:
        try:
            keywords(args, kwargs, ("readonly",), 0, (c_int,))
        except (TypeError, OverflowError) as e:
            raise SystemError("%r returned a result with an exception set" % (Error,)) from e
        channel = _open_channel()
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
        self._channel = channel

    def __del__(self) -> None:
        try:
            if self._channel is not None:
                self._close()
        except Exception:
            pass  # Nothing useful can be done while being collected.

    # Plumbing.

    def _require_open(self) -> Channel:
        """The channel, or ``Error(EINVAL)`` once the handle is closed."""
        channel = self._channel
        if channel is None:
            raise _error(errno.EINVAL)
        return channel

    def _sync(self) -> None:
        """Bring the fileno() descriptor up to date with the event queue
        (every public method does this last)."""
        readiness, channel = self._readiness, self._channel
        if readiness is not None and channel is not None:
            events = channel.events
            readiness.update(lambda: bool(events))

    def _fail(self) -> None:
        """The connection failed: it will not be used again."""
        self._failed = True
        if self._readiness is not None:
            self._readiness.forget_connection()

    def _close(self) -> None:
        channel, self._channel = self._channel, None
        with self._lock:
            self._tokens[:] = [None] * len(self._tokens)
        if channel is not None:
            channel.close()
        if self._readiness is not None:
            self._readiness.close()
            self._readiness = None

    @overload
    def _request(self, op: Op, payload: bytes, tx_id: int = 0) -> bytes: ...

    @overload
    def _request(self, op: Op, payload: bytes, tx_id: int = 0, *,
                 none_on: Tuple[int, ...]) -> Optional[bytes]: ...

    def _request(self, op: Op, payload: bytes, tx_id: int = 0, *,
                 none_on: Tuple[int, ...] = ()) -> Optional[bytes]:
        """Send one request and return the reply's payload, or None when
        it fails with an error number in *none_on*.

        :raises Error: for an error reply, a request too large (E2BIG) or
            a failed connection.
        """
        reply = self._exchange(op, payload, tx_id)
        if isinstance(reply, bytes):
            return reply
        if reply in none_on:
            return None
        raise _error(reply)

    def _exchange(self, op: Op, payload: bytes, tx_id: int) -> Union[bytes, int]:
        """Send one request: the reply's payload, or the error number of
        the failure.  (Numbers rather than exceptions, so that the
        library's exceptions do not linger as ``__context__`` of ours.)"""
        if len(payload) > PAYLOAD_MAX:
            return errno.E2BIG
        if self._failed:
            return errno.EBADF
        channel = self._channel
        if channel is None:
            return errno.EINVAL
        try:
            # Pinned to the first connection: should it fail, the channel
            # must not quietly open another one for this handle.
            reply = channel.reply(channel.submit([(op, payload)], tx_id, self._generation)[0])
        except InvalidPayload:
            return errno.E2BIG
        except ConnectionError as e:
            self._fail()
            return _errno_of_failure(e)
        if reply.op is Op.ERROR:
            return libxenstore_errno(_reply_string(reply.payload))
        return reply.payload

    def _next_event(self, timeout: Optional[float]) -> Optional[Tuple[bytes, bytes]]:
        """Take the next queued or arriving event, ``(path, token)``,
        waiting up to *timeout* seconds (for ever when None);
        ``Error(EINVAL)`` when the connection is gone and nothing is
        queued, as in libxenstore."""
        channel = self._require_open()
        if self._failed and not channel.events:
            raise _error(errno.EINVAL)
        try:
            packet = channel.next_event(timeout)
            if timeout == 0:
                # A message may have arrived in part (C xenstored writes
                # header and payload separately), waking select() on
                # fileno().  As libxenstore does when it must not block,
                # finish reading a message once it has started.
                deadline = time.monotonic() + channel.connection.timeout
                while (packet is None and channel.pending_bytes
                       and time.monotonic() < deadline):
                    packet = channel.next_event(0.01)
            if packet is None:
                return None
            # (The channel has checked that an event holds two strings.)
            path, token = split_strings(packet.payload)[:2]
            return path, token
        except ConnectionError:
            self._fail()
        raise _error(errno.EINVAL)

    def _match(self, event: Tuple[bytes, bytes]) -> Tuple[str, object]:
        """Find the token object of an event.

        :raises Error: EINVAL when the token is not a number, EAGAIN when
            it belongs to no current watch (an event still in flight for a
            watch that has been removed).
        """
        path, token = event
        value, end = strtol(token, 0)  # sscanf("%li") in xs.c's xspy_read_watch
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
        tx_id, raw = _node_args(transaction, path)
        return self._request(Op.READ, join_strings(raw), tx_id, none_on=_ABSENT)

    @_varargs
    def write(self, transaction: Handle, path: str, data: Union[str, bytes], /) -> None:
        """Set a node's value, creating it and missing parents.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :param data: the value: bytes, or a str (stored as UTF-8).
        :raises Error: when XenStore refuses (``E2BIG`` when the request
            is over XenStore's size limit).
        """
        tx_id, raw = _node_args(transaction, path)
        value = c_data(data, 3)
        self._request(Op.WRITE, join_strings(raw) + value, tx_id)

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
        tx_id, raw = _node_args(transaction, path)
        # ENOENT may come from any of the requests of a listing in parts.
        try:
            listing = self._list(raw, tx_id)
        except Error as e:
            if e.args[0] in _ABSENT:
                return None
            raise
        return [name.decode("utf-8") for name in split_strings(listing)]

    def _list(self, raw_path: bytes, tx_id: int) -> bytes:
        listing = self._request(Op.DIRECTORY, join_strings(raw_path), tx_id,
                                none_on=(errno.E2BIG,))
        return self._list_in_parts(raw_path, tx_id) if listing is None else listing

    def _list_in_parts(self, raw_path: bytes, tx_id: int) -> bytes:
        # libxenstore's algorithm (xs_directory_part() in xs.c), which
        # pyxs.Client._list_in_parts does its own way: ask from byte
        # offset `offset` of the listing; each part starts with the
        # directory's generation, and the whole listing ends with an extra
        # NUL.  A generation that changes between parts means the
        # directory changed: start over.
        names, offset, generation = b"", 0, b""
        while True:
            part = self._request(Op.DIRECTORY_PART, join_strings(raw_path, b"%d" % offset),
                                 tx_id, none_on=(errno.ENOSYS,))
            if part is None:
                raise _error(errno.E2BIG)  # No paging in this daemon: the list is too long.
            head = _reply_string(part)
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
        tx_id, raw = _node_args(transaction, path)
        self._request(Op.MKDIR, join_strings(raw), tx_id)

    @_varargs
    def rm(self, transaction: Handle, path: str, /) -> None:
        """Remove a node and everything below it.  ``ENOENT`` is not an
        error.

        :param transaction: a transaction handle, ``""`` for none.
        :param path: the node.
        :raises Error: for any failure but ``ENOENT``.
        """
        tx_id, raw = _node_args(transaction, path)
        self._request(Op.RM, join_strings(raw), tx_id, none_on=_ABSENT)

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
        tx_id, raw = _node_args(transaction, path)
        return _parse_permissions(self._request(Op.GET_PERMS, join_strings(raw), tx_id))

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
        tx_id, raw = _node_args(transaction, path)
        if not isinstance(perms, list):
            raise _error(errno.EINVAL)
        entries: List[Tuple[int, int]] = []
        for i in range(list.__len__(perms)):
            entry = list.__getitem__(perms, i)
            if not isinstance(entry, dict):
                raise SystemError("bad argument to internal function")
            dom, read, write = keywords((), entry, ("dom", "read", "write"), 1, [c_int] * 3)
            access = ((1 if read is not MISSING and read else 0)
                      | (2 if write is not MISSING and write else 0))
            entries.append((dom, access))
        if entries and entries[0][1] and entries[0][0]:
            entries.insert(0, (0, 0))
        strings = [PERM_LETTERS[access] + b"%d" % dom for dom, access in entries]
        self._request(Op.SET_PERMS, join_strings(raw, *strings), tx_id)

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
        raw = c_str(path, 1)
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
        # From now on the connection is drained (see _readiness).
        self._require_open().add_watch(watch)

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
        watch = (c_str(path, 1), _wire_token(token))
        try:
            self._request(Op.UNWATCH, join_strings(*watch))
            # The C extension has no unwatch filter: queued events stay.
            self._require_open().remove_watch(watch, drop_events=False)
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
            event = self._next_event(None)
            try:
                return self._match(event)  # type: ignore[arg-type]
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
        event = self._next_event(0)
        return None if event is None else self._match(event)

    @_noargs
    def fileno(self) -> int:
        """Return a descriptor that polls readable while watch events are
        waiting, for :func:`select.select` and friends.  It stays the
        same for the life of the handle and is closed by :meth:`close`.
        (See ``pyxs/_compat/_readiness.py`` for how it works.)"""
        channel = self._require_open()
        with self._lock:
            if self._readiness is None:
                try:
                    self._readiness = Readiness(
                        None if self._failed else channel.connection.fd)
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
        reply = self._request(Op.TRANSACTION_START, join_strings(b""))
        tx_id = u32(strtoul(_reply_string(reply), 0))
        if not tx_id:
            raise _error(errno.EINVAL)
        return "%X" % tx_id

    @_varkwargs
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
        transaction, abort = keywords(args, kwargs, ("transaction", "abort"), 1,
                                      (c_str, c_int))
        tx_id = u32(strtoul(transaction, 16))
        flag = b"F" if abort is not MISSING and abort else b"T"
        return self._request(Op.TRANSACTION_END, join_strings(flag), tx_id,
                             none_on=(errno.EAGAIN,)) is not None

    # Domains.

    @_varargs
    def introduce_domain(self, dom: int, page: int, port: int, /) -> None:
        """Tell XenStore about a new domain, its XenStore page (machine
        frame number) and event channel.

        :raises Error: when XenStore refuses.
        """
        domid, frame, channel = c_int(dom, 1), c_long(page, 2), c_int(port, 3)
        self._request(Op.INTRODUCE, join_strings(b"%d" % u32(domid), b"%d" % (frame & ULONG_MAX),
                                                 b"%d" % u32(channel)))

    @_varargs
    def set_target(self, dom: int, target: int, /) -> None:
        """Let domain *dom* act for domain *target* (a device model's
        privilege).

        :raises Error: when XenStore refuses.
        """
        domid, target_id = c_int(dom, 1), c_int(target, 2)
        self._request(Op.SET_TARGET, join_strings(b"%d" % u32(domid), b"%d" % u32(target_id)))

    @_varargs
    def resume_domain(self, dom: int, /) -> None:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again.

        :raises Error: when XenStore refuses.
        """
        self._request(Op.RESUME, join_strings(b"%d" % u32(c_int(dom, 1))))

    @_varargs
    def release_domain(self, dom: int, /) -> None:
        """Tell XenStore to forget a domain.

        :raises Error: when XenStore refuses.
        """
        self._request(Op.RELEASE, join_strings(b"%d" % u32(c_int(dom, 1))))

    @_varargs
    def get_domain_path(self, domid: int, /) -> Optional[str]:
        """Return a domain's home path, ``/local/domain/<domid>``, whether
        or not the domain exists.

        :returns: the path, or None when XenStore answers ``ENOENT``.
        :raises Error: for any other failure.
        """
        number = c_int(domid, 1)
        reply = self._request(Op.GET_DOMAIN_PATH, join_strings(b"%d" % u32(number)),
                              none_on=_ABSENT)
        return None if reply is None else _reply_string(reply).decode("utf-8")

    @_noargs
    def close(self) -> None:
        """Close the connection.  Every later call, close() included,
        raises ``Error(EINVAL)``.  XenStore drops the handle's watches and
        aborts its open transactions."""
        self._close()
