"""The XenStore client: :class:`Client` for requests, :class:`Monitor` for
watches.

Every :class:`Client` and :class:`Monitor` talks through a channel
(``pyxs._channel``), the one place that numbers requests, matches
replies to them and routes watch events.  This module turns the
operations into requests and the replies into Python values.
"""

from __future__ import annotations

import collections
import copy
import errno
import itertools
import os
import threading
import time
import weakref
from typing import (Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, TypeVar, Union, overload)

from ._channel import Channel, Slot, forget_parent_after_fork
from ._internal import Event, Op, join_strings, split_strings
from .connection import (FileDescriptorConnection, UnixSocketConnection,
                         XenBusConnection, default_socket_path, default_xenbus_path)
from .exceptions import ConnectionError, InvalidPayload, PyXSError, UnexpectedPacket
from .helpers import (Text, encode_number, encode_path, encode_perms, encode_token,
                      encode_value, encode_watch_path, error, to_bytes, to_text,
                      warn_deprecated)

__all__ = ["Client", "Monitor"]

T = TypeVar("T")

#: How many requests the bulk operations keep in flight at once.
PIPELINE_DEPTH = 64

#: How many times :meth:`Client.run_in_transaction` tries by default.
DEFAULT_TRANSACTION_ATTEMPTS = 16

_OK = b"OK\0"

# Tells "no default given" from any default a caller may pass, None included.
_NO_DEFAULT = object()


def _expect_ok(op: Op, reply: bytes) -> None:
    # The stream is still well framed: only this call fails.
    if reply != _OK:
        raise UnexpectedPacket("XenStore answered %s with %r instead of OK" % (op.name, reply))


def _texts(payload: bytes) -> List[str]:
    """A reply's NUL-terminated strings as text: :func:`split_strings`,
    decoded in one go (NUL is a byte of its own in any decoding of it)."""
    return to_text(payload).split("\0")[:-1]


_User = TypeVar("_User", bound="_ChannelUser")


class _ChannelUser:
    """What :class:`Client` and :class:`Monitor` share: a channel, either
    their own or borrowed from the client they were made from."""

    _channel: Channel
    # The object whose channel this one borrows (kept alive by it); None
    # when the channel is this object's own.
    _owner: Optional["_ChannelUser"]

    def _bind(self, channel: Channel, owner: Optional["_ChannelUser"]) -> None:
        self._channel = channel
        self._owner = owner
        if owner is None:
            # A channel with watches is kept alive by its drainer thread:
            # close it once its owner and every borrower are forgotten, so
            # that the thread and the connection go too.
            weakref.finalize(self, channel.close)

    @classmethod
    def _borrowing(cls: "type[_User]", lender: "_ChannelUser") -> "_User":
        """An object of this class that works through *lender*'s channel."""
        borrower = cls.__new__(cls)
        borrower._bind(lender._channel, lender._owner or lender)
        return borrower

    @property
    def connection(self) -> FileDescriptorConnection:
        """The connection requests and events go through."""
        return self._channel.connection

    def connect(self) -> None:
        """Connect now rather than on first use."""
        self._channel.connect()

    def close(self) -> None:
        """Close the connection, unless it is borrowed from another client.
        XenStore then aborts a transaction left open and ends every watch
        made on it, and pyxs forgets the watches.  The next call connects
        again."""
        if self._owner is None:
            self._channel.close()

    def __enter__(self: "_User") -> "_User":
        self.connect()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<%s on %r, %s>" % (type(self).__name__, self.connection,
                                   "connected" if self.connection.is_connected
                                   else "not connected")


class Client(_ChannelUser):
    """A connection to XenStore, and the operations on it.

    The backend follows from the arguments: a Unix socket when
    *unix_socket_path* is given, the XenBus device when *xen_bus_path* is,
    the given *connection* object when there is one.  With none of them,
    the client uses the daemon's Unix socket, unless the socket is
    missing and a XenBus device is there (as inside a guest), exactly as
    Xen's own client library decides.

    The client connects on first use, on :meth:`connect`, or on entering a
    ``with`` block, which closes it at the end.  One client may be shared
    by many threads: each call gets its own reply.

    >>> with Client(unix_socket_path=socket_path) as c:
    ...     c.write("/vm/1/name", "guest")
    ...     c.read("/vm/1/name")
    'guest'

    Paths and tokens are :class:`str` (bytes are accepted too); values come
    back as :class:`str`, decoded from UTF-8 with bytes that are not UTF-8
    kept as lone surrogates, so writing a value back stores exactly the
    bytes that were read.  :meth:`read_bytes` gives the raw bytes.

    :param unix_socket_path: the xenstored socket to use.
    :param socket_timeout: seconds any call may take before it fails with
        :exc:`~pyxs.exceptions.Timeout` (default 30).
    :param xen_bus_path: the XenBus device to use.
    :param connection: a ready-made, not yet connected connection object.
    :param transaction: if true, start a transaction at once; the client
        then works inside it (see :meth:`transaction_start`).
    :param max_queued_events: how many events of this client's own
        watches (:meth:`watch`) may wait to be taken; None, the default,
        for no limit.  See :class:`Monitor`.
    """

    def __init__(self, unix_socket_path: Optional[str] = None,
                 socket_timeout: Optional[float] = None,
                 xen_bus_path: Optional[str] = None,
                 connection: Optional[FileDescriptorConnection] = None,
                 transaction: Optional[bool] = None, *,
                 max_queued_events: Optional[int] = None) -> None:
        if connection is None:
            if unix_socket_path is None and xen_bus_path is None:
                if (not os.path.exists(default_socket_path())
                        and os.path.exists(default_xenbus_path())):
                    xen_bus_path = default_xenbus_path()
            if xen_bus_path is not None and unix_socket_path is None:
                connection = XenBusConnection(xen_bus_path, socket_timeout)
            else:
                connection = UnixSocketConnection(unix_socket_path, socket_timeout)
        self._bind(Channel(connection, max_queued_events), None)
        if transaction:
            self.transaction_start()

    def _bind(self, channel: Channel, owner: Optional[_ChannelUser]) -> None:
        super()._bind(channel, owner)
        self._tx_lock = threading.Lock()
        #: The transaction this client works in; 0 when none.
        self.tx_id = 0
        self._tx_generation = 0
        self._monitor: Optional[Monitor] = None
        forget_parent_after_fork(self)

    def _forget_parent(self) -> None:
        # In a child after fork(): the lock may have been held by a thread
        # that the child does not have.  (The channel forgets the parent's
        # connection, and so the transaction, by itself.)
        self._tx_lock = threading.Lock()

    def __repr__(self) -> str:
        text = super().__repr__()
        return text[:-1] + ", in transaction %d>" % self.tx_id if self.tx_id else text

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if self.tx_id:
                if exc_type is None:
                    self.transaction_end(commit=True)
                else:
                    try:
                        self.transaction_end(commit=False)
                    except PyXSError:
                        pass  # The exception in flight matters more.
        finally:
            self.close()

    # Requests.

    def _submit(self, requests: Sequence[Tuple[Op, bytes]]) -> List[Slot]:
        tx_id = self.tx_id
        return self._channel.submit(requests, tx_id, self._tx_generation if tx_id else None)

    def _call(self, op: Op, payload: bytes) -> bytes:
        tx_id = self.tx_id
        return self._channel.call(op, payload, tx_id, self._tx_generation if tx_id else None)

    def _ack(self, op: Op, payload: bytes) -> None:
        _expect_ok(op, self._call(op, payload))

    # Nodes.

    def read_bytes(self, path: Text) -> bytes:
        """Return the value of *path* exactly as XenStore holds it.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when there is no
            such node, ``EACCES`` when it may not be read.

        .. versionadded:: 0.5.0
        """
        return self._call(Op.READ, join_strings(encode_path(path)))

    @overload
    def read(self, path: Text) -> str: ...

    @overload
    def read(self, path: Text, default: T) -> Union[str, T]: ...

    def read(self, path: Text, default: object = _NO_DEFAULT) -> object:
        """Return the value of *path* as text (see the class notes on how
        bytes that are not UTF-8 are kept), or *default*, when one is
        given, if there is no such node:

        >>> with Client(unix_socket_path=socket_path) as c:
        ...     c.read("/vm/1/memory", "512")
        '512'

        :param default: what to return for a missing node (``None`` too);
            without it a missing node raises.
        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when there is no
            such node and no *default*, ``EACCES`` when it may not be read.

        .. versionadded:: 0.5.0
           The *default* parameter, as pyxs 0.3.1 to 0.4.1 had it.
        """
        try:
            # read_bytes()'s request, made here: one call less per read.
            return to_text(self._call(Op.READ, encode_path(path) + b"\0"))
        except PyXSError as e:
            if default is _NO_DEFAULT or e.errno != errno.ENOENT:
                raise
            return default

    def exists(self, path: Text) -> bool:
        """Whether there is a node at *path*; ``path in client`` asks the
        same:

        >>> with Client(unix_socket_path=socket_path) as c:
        ...     c["/vm/1/name"] = "guest"
        ...     c.exists("/vm/1/name"), "/vm/1/memory" in c
        (True, False)

        :raises pyxs.exceptions.PyXSError: ``EACCES`` when XenStore will
            not say, because the node may not be read.

        .. versionadded:: 0.5.0
        """
        try:
            self.read_bytes(path)
        except PyXSError as e:
            if e.errno != errno.ENOENT:
                raise
            return False
        return True

    def write(self, path: Text, value: object) -> None:
        """Set the value of *path*, creating it and any missing parents.

        :param value: bytes are written as they are, str as UTF-8, and
            anything else as its ``str()``.
        """
        self._ack(Op.WRITE, encode_path(path) + b"\0" + encode_value(value))

    def mkdir(self, path: Text) -> None:
        """Make sure *path* exists, creating it and any missing parents
        with empty values; existing nodes keep their values."""
        self._ack(Op.MKDIR, join_strings(encode_path(path)))

    def rm(self, path: Text) -> None:
        """Remove *path* and everything below it.  A missing node is not
        an error as long as its parent exists.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when the parent is
            missing too.
        """
        self._ack(Op.RM, join_strings(encode_path(path)))

    def ls(self, path: Text) -> List[str]:
        """Return the names of the children of *path*.  The order is the
        daemon's: never rely on it.

        A listing too large for one reply (4096 bytes) is fetched in parts
        from C xenstored.  oxenstored 4.17 cannot page, and sends such a
        listing in one reply over the protocol's limit: pyxs then raises
        :exc:`~pyxs.exceptions.UnexpectedPacket`, as Xen's own client
        library fails there too, and connects again on the next call.
        """
        raw = encode_path(path)
        try:
            listing = self._call(Op.DIRECTORY, join_strings(raw))
            return _texts(listing)
        except PyXSError as e:
            if e.errno != errno.E2BIG:
                raise
        return [to_text(name) for name in self._list_in_parts(raw)]

    def _list_in_parts(self, raw_path: bytes) -> List[bytes]:
        # Each part starts with the directory's generation count; a change
        # of it means the directory changed under us: start again, for as
        # long as a call may take.  (pyxs.compat.xs._list_in_parts pages
        # as libxenstore does, C quirks included.)
        deadline = time.monotonic() + self.connection.timeout
        while time.monotonic() < deadline:
            names: List[bytes] = []
            offset, generation = 0, None
            while True:
                part = self._call(Op.DIRECTORY_PART, join_strings(raw_path, b"%d" % offset))
                count, _, listing = part.partition(b"\0")
                if generation is None:
                    generation = count
                elif count != generation:
                    break
                if listing in (b"", b"\0"):
                    return names
                complete = listing.endswith(b"\0\0")
                entries = split_strings(listing[:-1] if complete else listing)
                names.extend(entries)
                if complete:
                    return names
                if not entries:
                    self._channel.violation("answered DIRECTORY_PART with %r, which "
                                            "lists nothing and is not the end" % (part,))
                offset += sum(len(name) + 1 for name in entries)
        raise PyXSError(errno.EAGAIN, "%r kept changing while it was listed for %gs"
                        % (to_text(raw_path), self.connection.timeout))

    def get_permissions(self, path: Text) -> List[str]:
        """Return the permissions of *path*, such as ``["n0", "r5"]``: the
        owner's entry first (its letter is the access of domains not
        listed), then one per domain.  Special paths are accepted."""
        reply = self._call(Op.GET_PERMS, join_strings(encode_watch_path(path)))
        return _texts(reply)

    def set_permissions(self, path: Text, perms: Sequence[Text]) -> None:
        """Replace the permissions of *path* (see :meth:`get_permissions`).

        :raises pyxs.exceptions.InvalidPermission: for a malformed list,
            before anything is sent.
        """
        self._ack(Op.SET_PERMS, join_strings(encode_watch_path(path), *encode_perms(perms)))

    # A client reads like a mapping of paths to values.

    def __getitem__(self, path: Text) -> str:
        """``client[path]``: :meth:`read`, without a default."""
        return self.read(path)

    def __setitem__(self, path: Text, value: object) -> None:
        """``client[path] = value``: :meth:`write`."""
        self.write(path, value)

    def __delitem__(self, path: Text) -> None:
        """``del client[path]``: :meth:`rm`."""
        self.rm(path)

    def __contains__(self, path: Text) -> bool:
        """``path in client``: :meth:`exists`.

        .. versionadded:: 0.5.0
        """
        return self.exists(path)

    def read_many(self, paths: Iterable[Text]) -> List[Optional[str]]:
        """Read many nodes at once, keeping up to ``PIPELINE_DEPTH`` (64)
        requests in flight on the connection, which is much faster than
        reading them one by one.

        :returns: the values, in the order of *paths*; None for a node
            that does not exist.
        :raises pyxs.exceptions.PyXSError: for any other error reply.

        .. versionadded:: 0.5.0
        """
        values: List[Optional[str]] = []
        for slot in self._pipelined([(Op.READ, join_strings(encode_path(path)))
                                     for path in paths]):
            try:
                values.append(to_text(self._channel.result(slot)))
            except PyXSError as e:
                if e.errno != errno.ENOENT:
                    raise
                values.append(None)
        return values

    def write_many(self, items: Union[Mapping[Text, object],
                                      Iterable[Tuple[Text, object]]]) -> None:
        """Write many nodes at once, in order, keeping up to
        ``PIPELINE_DEPTH`` (64) requests in flight: the way to create a
        whole subtree, such as a new domain's, quickly.  Missing parents
        are created, as by :meth:`write`.

        Every path and value is checked before anything is sent.  Inside
        a transaction the writes take effect together, or not at all,
        when it ends; that is the way to make them all-or-nothing:

        >>> with Client(unix_socket_path=socket_path) as c:
        ...     with c.transaction():
        ...         c.write_many({"/vm/7/name": "guest", "/vm/7/memory": "512"})
        ...     c.read_many(["/vm/7/name", "/vm/7/memory"])
        ['guest', '512']

        :param items: a mapping from path to value, or ``(path, value)``
            pairs; values as :meth:`write` takes them.  A path given
            twice ends with its last value.
        :raises pyxs.exceptions.PyXSError: for the first write XenStore
            refuses, once every write already sent has been answered;
            the writes after it that were not yet sent are not sent.
            Outside a transaction the writes before it have been made.

        .. versionadded:: 0.5.0
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        for slot in self._pipelined([(Op.WRITE, encode_path(path) + b"\0" + encode_value(value))
                                     for path, value in pairs]):
            _expect_ok(Op.WRITE, self._channel.result(slot))

    def _pipelined(self, requests: Sequence[Tuple[Op, bytes]]) -> Iterator[Slot]:
        """Send *requests* and yield their slots in order, keeping between
        half of ``PIPELINE_DEPTH`` and all of it in flight, so that
        XenStore always has the next requests at hand and each write
        carries many of them.  Requests not sent when the consumer stops
        are never sent; all are checked before the first is."""
        for _, payload in requests:
            self._channel.check_size(payload)
        in_flight: Deque[Slot] = collections.deque()
        sent = 0
        while sent < len(requests) or in_flight:
            if sent < len(requests) and len(in_flight) <= PIPELINE_DEPTH // 2:
                batch = requests[sent:sent + PIPELINE_DEPTH - len(in_flight)]
                in_flight.extend(self._submit(batch))
                sent += len(batch)
            yield in_flight.popleft()

    def walk(self, top: Text, topdown: bool = True) -> Iterator[Tuple[str, str, List[str]]]:
        """Walk the tree below *top* like :func:`os.walk`, yielding
        ``(path, value, children)`` for every node.

        With *topdown* true a node comes before its children, and removing
        names from ``children`` in place keeps the walk out of them; with
        *topdown* false every node comes after all of its descendants.
        Nodes that vanish or may not be read during the walk are skipped.
        The walk reads ahead, with many requests in flight at once.

        .. versionchanged:: 0.5.0
           Reads ahead; nodes that vanish or may not be read are skipped.
        """
        reader = _TreeReader(self)
        # A stack of nodes to visit, and of finished nodes (topdown false)
        # waiting for their descendants to be yielded first.
        stack: List[Tuple[str, Optional[Tuple[str, str, List[str]]]]] = [
            (to_text(encode_path(top)), None)]
        while stack:
            path, finished = stack.pop()
            if finished is not None:
                yield finished
                continue
            try:
                value, children = reader.take(path)
            except PyXSError as e:
                if e.errno in (errno.ENOENT, errno.EACCES):
                    continue
                raise
            node = (path, value, children)
            if topdown:
                yield node
            else:
                stack.append((path, node))
            if children:
                prefix = path.rstrip("/") + "/"
                child_paths = [prefix + child for child in children]
                reader.expect(child_paths)
                stack.extend([(child, None) for child in reversed(child_paths)])

    # Domains.

    def get_domain_path(self, domid: int) -> str:
        """Return the home path of a domain, ``/local/domain/<domid>``.
        XenStore does not check that the domain exists."""
        return to_text(self._call(Op.GET_DOMAIN_PATH,
                                  join_strings(encode_number(domid, "domid"))).rstrip(b"\0"))

    def is_domain_introduced(self, domid: int) -> bool:
        """Whether XenStore is talking to the domain: it was introduced and
        has been neither released nor destroyed since."""
        return self._call(Op.IS_DOMAIN_INTRODUCED,
                          join_strings(encode_number(domid, "domid"))) == b"T\0"

    def introduce_domain(self, domid: int, mfn: int, eventchn: int) -> None:
        """Tell XenStore to talk to a domain through its XenStore page
        (machine frame *mfn*) and event channel *eventchn*.

        :param domid: the domain; 0, the control domain, is refused, since
            XenStore set it up at start.
        """
        raw_domid = encode_number(domid, "domid")
        if int(raw_domid) == 0:
            raise InvalidPayload("domain 0 cannot be introduced")
        self._ack(Op.INTRODUCE, join_strings(raw_domid, encode_number(mfn, "mfn"),
                                             encode_number(eventchn, "eventchn")))

    def release_domain(self, domid: int) -> None:
        """Tell XenStore to stop talking to a domain (it also does so by
        itself when the domain dies)."""
        self._ack(Op.RELEASE, join_strings(encode_number(domid, "domid")))

    def resume_domain(self, domid: int) -> None:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again."""
        self._ack(Op.RESUME, join_strings(encode_number(domid, "domid")))

    def set_target(self, domid: int, target: int) -> None:
        """Let *domid* act for *target*: it gets full access to what
        *target* owns and every permission *target* has (as a device
        model domain needs)."""
        self._ack(Op.SET_TARGET, join_strings(encode_number(domid, "domid"),
                                              encode_number(target, "target")))

    # Transactions.

    def transaction_start(self) -> int:
        """Start a transaction; this client's calls then work inside it,
        on a snapshot of the tree, until :meth:`transaction_end`.

        :returns: the transaction id.
        :raises pyxs.exceptions.PyXSError: ``EALREADY`` when this client
            is already in a transaction.
        """
        with self._tx_lock:
            if self.tx_id:
                raise error(errno.EALREADY)
            slot, = self._channel.submit([(Op.TRANSACTION_START, b"\0")])
            reply = self._channel.result(slot)
            digits = reply[:-1]
            # A transaction id is a decimal number from 1 to 2**32 - 1
            # (0 means "no transaction"), NUL-terminated.
            if not (reply.endswith(b"\0") and digits.isdigit() and len(digits) <= 10
                    and 0 < int(digits) <= 0xFFFFFFFF):
                # The daemon may hold a transaction we cannot name: only
                # ending the connection ends it.
                self._channel.violation("answered TRANSACTION_START with %r, which is "
                                        "not a transaction id" % (reply,))
            tx_id = int(digits)
            self.tx_id, self._tx_generation = tx_id, slot.generation
            return tx_id

    def transaction_end(self, commit: bool = True) -> None:
        """End this client's transaction, committing its changes or, with
        *commit* false, dropping them.  Nothing is sent when there is no
        transaction.

        :raises pyxs.exceptions.PyXSError: ``EAGAIN`` when the commit
            conflicts with a change made meanwhile: nothing was committed,
            and the whole transaction must be done again (see
            :meth:`run_in_transaction`).
        :raises pyxs.exceptions.ConnectionError: when the connection, and
            so the transaction, was lost before a commit.
        """
        with self._tx_lock:
            if not self.tx_id:
                return
            tx_id, generation, self.tx_id = self.tx_id, self._tx_generation, 0
            try:
                reply = self._channel.call(Op.TRANSACTION_END, b"T\0" if commit else b"F\0",
                                           tx_id, generation)
            except ConnectionError:
                if commit:
                    raise
                return  # A lost transaction is as aborted as can be.
            _expect_ok(Op.TRANSACTION_END, reply)

    def transaction(self) -> "Client":
        """Start a transaction and return a client that works inside it,
        sharing this client's connection.  Used in a ``with`` block, the
        transaction commits when the block ends normally and aborts when
        it raises:

        >>> with Client(unix_socket_path=socket_path) as c:
        ...     with c.transaction() as t:
        ...         t["/vm/1/state"] = "running"
        ...     c["/vm/1/state"]
        'running'

        :raises pyxs.exceptions.PyXSError: ``EALREADY`` when this client
            is itself in a transaction.
        """
        if self.tx_id:
            raise error(errno.EALREADY)
        client = Client._borrowing(self)
        client.transaction_start()
        return client

    def run_in_transaction(self, func: Callable[["Client"], T],
                           attempts: int = DEFAULT_TRANSACTION_ATTEMPTS) -> T:
        """Call ``func(t)`` with *t* a client in a fresh transaction, and
        commit; when the commit conflicts, do it all again, up to
        *attempts* times in all.  *func* must do all its XenStore work
        through *t* and be safe to repeat.

        >>> def increment(t):
        ...     value = int(t["/vm/1/counter"]) + 1
        ...     t["/vm/1/counter"] = value
        ...     return value
        >>> with Client(unix_socket_path=socket_path) as c:
        ...     c["/vm/1/counter"] = 41
        ...     c.run_in_transaction(increment)
        42

        :returns: what *func* returned in the attempt that committed.
        :raises pyxs.exceptions.PyXSError: ``EAGAIN`` when every attempt
            conflicted; whatever *func* raised (the transaction is then
            aborted and not retried).

        .. versionadded:: 0.5.0
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1, not %r" % (attempts,))
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as t:
                    return func(t)
            except PyXSError as e:
                if e.errno != errno.EAGAIN or attempt == attempts:
                    raise
            # Back off a little, at random, so that rivals stop colliding.
            # (random is imported only here, where a conflict needs it: it
            # is a noticeable part of what "import pyxs" would cost.)
            import random

            time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** attempt)))
        raise AssertionError("unreachable")

    # Watches.

    def monitor(self, *, max_queued_events: Optional[int] = None) -> "Monitor":
        """Return a :class:`Monitor` on a connection of its own.

        :param max_queued_events: see :class:`Monitor`.
        """
        return Monitor(copy.copy(self.connection), max_queued_events=max_queued_events)

    def _own_monitor(self) -> "Monitor":
        if self._monitor is None:
            self._monitor = Monitor._borrowing(self)
        return self._monitor

    def watch(self, wpath: Text, token: Text) -> None:
        """Watch *wpath* on this client's connection; see
        :meth:`Monitor.watch`.

        .. versionadded:: 0.5.0
        """
        self._own_monitor().watch(wpath, token)

    def unwatch(self, wpath: Text, token: Text) -> None:
        """Stop a watch made with :meth:`watch`; see :meth:`Monitor.unwatch`.

        .. versionadded:: 0.5.0
        """
        self._own_monitor().unwatch(wpath, token)

    def wait(self, sleep: Optional[float] = None,
             timeout: Optional[float] = None) -> Optional[Event]:
        """Wait for an event of this client's watches; see
        :meth:`Monitor.wait`.

        .. versionadded:: 0.5.0
        """
        return self._own_monitor().wait(sleep, timeout)

    def wait_for(self, path: Text, condition: Union[object, Callable[[Optional[str]], bool]],
                 timeout: Optional[float] = None) -> Optional[str]:
        """Wait until the node *path* satisfies *condition*, and return
        its value then.

        *condition* is either a value, met when the node's text equals it
        (a number or bytes is compared as :meth:`write` would store it,
        and None means "the node is missing"), or a callable given the
        node's value (None while the node is missing) that returns true
        once the wait is over.  The node is watched before it is first
        read, so no change can slip between the two.

        >>> with Client(unix_socket_path=socket_path) as c:
        ...     c["/vm/2/state"] = 4
        ...     c.wait_for("/vm/2/state", 4, timeout=5)
        '4'

        The watch uses a connection of its own (see :meth:`monitor`), so
        this client's own watches and events are left alone, and it is
        gone when the call returns, whatever the outcome.

        :param timeout: seconds to wait at most; None waits for ever.
        :returns: the value that satisfied *condition* (None when the node
            was missing).
        :raises TimeoutError: (the built-in one) when *timeout* passed
            first; the client is still usable.
        :raises pyxs.exceptions.PyXSError: ``EALREADY`` inside a
            transaction, which could never see the change.

        .. versionadded:: 0.5.0
        """
        raw = encode_path(path)
        if self.tx_id:
            raise error(errno.EALREADY)
        satisfied: Callable[[Optional[str]], object]
        if callable(condition):
            satisfied = condition
        elif condition is None:
            satisfied = _is_none
        else:
            expected = to_text(encode_value(condition))

            def satisfied(value: Optional[str]) -> bool:
                return value == expected
        deadline = None if timeout is None else time.monotonic() + timeout
        token = "pyxs-wait-for-%d-%d" % (os.getpid(), next(_wait_tokens))
        with self.monitor() as monitor:
            monitor.watch(raw, token)
            while True:
                try:
                    value: Optional[str] = self.read(raw)
                except PyXSError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    value = None
                if satisfied(value):
                    return value
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0 \
                        or monitor.wait(timeout=remaining) is None:
                    raise TimeoutError("%r did not meet the condition within %ss"
                                       % (to_text(raw), timeout))
                # Read once for every burst of changes, not once per event.
                while monitor.wait(timeout=0) is not None:
                    pass


    # The names pyxs 0.4 used, kept for programs written for it; see
    # docs/migrating.rst.  They come last: ``list`` would otherwise hide
    # the built-in in the rest of the class body.

    def list(self, path: Text) -> List[str]:
        """Deprecated name of :meth:`ls`.

        .. deprecated:: 0.5.0
           Use :meth:`ls`.
        """
        warn_deprecated("Client.list()", "Client.ls()")
        return self.ls(path)

    def delete(self, path: Text) -> None:
        """Deprecated name of :meth:`rm`.

        .. deprecated:: 0.5.0
           Use :meth:`rm`.
        """
        warn_deprecated("Client.delete()", "Client.rm()")
        self.rm(path)

    def get_perms(self, path: Text) -> List[str]:
        """Deprecated name of :meth:`get_permissions`.

        .. deprecated:: 0.5.0
           Use :meth:`get_permissions`.
        """
        warn_deprecated("Client.get_perms()", "Client.get_permissions()")
        return self.get_permissions(path)

    def set_perms(self, path: Text, perms: Sequence[Text]) -> None:
        """Deprecated name of :meth:`set_permissions`.

        .. deprecated:: 0.5.0
           Use :meth:`set_permissions`.
        """
        warn_deprecated("Client.set_perms()", "Client.set_permissions()")
        self.set_permissions(path, perms)

    def commit(self) -> bool:
        """End this client's transaction with a commit, as pyxs 0.4 did:
        False when it conflicted with another change (nothing was
        committed), True when it committed.

        .. deprecated:: 0.5.0
           Use :meth:`transaction_end`, which raises ``EAGAIN`` for a
           conflict, or :meth:`run_in_transaction`.
        """
        warn_deprecated("Client.commit()", "Client.transaction_end(commit=True)")
        self._require_transaction("commit")
        try:
            self.transaction_end(commit=True)
        except PyXSError as e:
            if e.errno != errno.EAGAIN:
                raise
            return False
        return True

    def rollback(self) -> None:
        """End this client's transaction, dropping its changes.

        .. deprecated:: 0.5.0
           Use ``transaction_end(commit=False)``.
        """
        warn_deprecated("Client.rollback()", "Client.transaction_end(commit=False)")
        self._require_transaction("rollback")
        self.transaction_end(commit=False)

    def _require_transaction(self, method: str) -> None:
        # pyxs 0.4 sent the request even without a transaction, and
        # XenStore refused it; here the likely cause is named: 0.4's
        # transaction() put the client itself in the transaction.
        if not self.tx_id:
            raise PyXSError(errno.ENOENT, "%s(): this client is not in a transaction; "
                            "since pyxs 0.5, transaction() returns a new client that is "
                            "(or use transaction_start())" % method)


_wait_tokens = itertools.count()


def _is_none(value: Optional[str]) -> bool:
    return value is None


class _TreeReader:
    """Fetch the value and children of nodes ahead of a depth-first walk.

    ``_ahead`` holds the paths still to visit, in visiting order.  The
    first :data:`PIPELINE_DEPTH` // 2 of them are requested (two requests
    each) before they are needed, topped up in one write whenever fewer
    than half of them are, so that the walk rarely waits for a round
    trip and each write carries many requests.  A request counts against
    the pipeline until its reply arrives, not until its node is visited:
    the directories requested early, at their parent, are answered long
    before the walk reaches them, and must not keep the next nodes from
    being requested meanwhile.
    """

    _WINDOW = PIPELINE_DEPTH // 2

    def __init__(self, client: Client) -> None:
        self._client = client
        self._ahead: Deque[str] = collections.deque()
        # How many paths at the front of _ahead are requested.
        self._covered = 0
        self._in_flight: Dict[str, List[Slot]] = {}

    def expect(self, paths: Sequence[str]) -> None:
        """Queue *paths* to be visited next, in order, before any path
        queued earlier (the walk is depth-first)."""
        if paths:
            self._ahead.extendleft(reversed(paths))
            self._covered = 0
        self._top_up()

    def take(self, path: str) -> Tuple[str, List[str]]:
        """Return the value and children of *path*, the next path to visit."""
        ahead = self._ahead
        if ahead and ahead[0] == path:
            ahead.popleft()
            if self._covered:
                self._covered -= 1
        slots = self._in_flight.pop(path, None)
        if slots is None:
            slots = self._send([path])[path]
        self._top_up()
        listing_slot, value_slot = slots
        channel = self._client._channel
        try:
            children = _texts(channel.result(listing_slot))
        except PyXSError as e:
            if e.errno != errno.E2BIG:
                raise
            children = self._client.ls(path)
        return to_text(channel.result(value_slot)), children

    def _top_up(self) -> None:
        ahead, in_flight = self._ahead, self._in_flight
        if self._covered * 2 > self._WINDOW or self._covered >= len(ahead):
            return
        # Room for this many paths in the pipeline; the next path to visit
        # is requested even without (it is waited for next anyway).
        room = (PIPELINE_DEPTH - self._client._channel.awaited) // 2
        if room <= 0:
            if self._covered:
                return
            room = 1
        covered = self._covered
        missing: List[str] = []
        for path in itertools.islice(ahead, covered, self._WINDOW):
            if path not in in_flight:
                if len(missing) == room:
                    break
                missing.append(path)
            covered += 1
        self._covered = covered
        if missing:
            in_flight.update(self._send(missing))

    def _send(self, paths: List[str]) -> Dict[str, List[Slot]]:
        requests = []
        directory, read = Op.DIRECTORY, Op.READ
        for path in paths:
            payload = join_strings(to_bytes(path, "path"))
            requests += [(directory, payload), (read, payload)]
        slots = self._client._submit(requests)
        return {path: slots[2 * i:2 * i + 2] for i, path in enumerate(paths)}


class Monitor(_ChannelUser):
    """Watches on XenStore, and the events they produce.

    :meth:`Client.monitor` gives a monitor with a connection of its own::

        with client.monitor() as m:
            m.watch("/vm", "vm-changed")
            for event in m:
                print(event.path, event.token)

    Events are never left waiting in XenStore: while a monitor has a
    watch, a thread of pyxs's reads its connection whenever the program
    does not, and queues the events in the process (XenStore would
    otherwise hold them, and oxenstored then stops serving other
    clients).  The queue has no limit unless *max_queued_events* sets
    one; then the events beyond it are dropped, and the next
    :meth:`wait` raises :exc:`~pyxs.exceptions.EventsDropped` to say so.

    When the connection breaks (XenStore restarted, say), pyxs connects
    again within the connection's timeout and registers every watch
    again.  XenStore answers each new watch with an event for the
    watched path itself: seeing that event again is the cue to read
    again what the watch covers, since changes made while the connection
    was down brought no event.

    After :func:`os.fork`, a monitor used in the child opens a connection
    of its own, with no watches: the parent keeps its watches and their
    events.

    :param connection: the (not yet connected) connection to use.
    :param max_queued_events: how many events may wait to be taken; None,
        the default, for no limit.
    """

    def __init__(self, connection: FileDescriptorConnection, *,
                 max_queued_events: Optional[int] = None) -> None:
        self._bind(Channel(connection, max_queued_events), None)

    def watch(self, wpath: Text, token: Text) -> None:
        """Watch *wpath* and everything below it.

        Every change to the watched nodes (a write, a removal, new
        permissions) brings an event with the changed path and *token*;
        changes made in a transaction do so when it commits.  XenStore
        also sends one event right away, for *wpath* itself.  The special
        paths ``@introduceDomain`` and ``@releaseDomain`` report domains
        coming and going.

        :param token: any string without NUL; it tells the events of
            different watches apart.
        :raises pyxs.exceptions.PyXSError: ``EEXIST`` when the same path
            and token are already watched.
        """
        watch = (encode_watch_path(wpath), encode_token(token))
        _expect_ok(Op.WATCH, self._channel.call(Op.WATCH, join_strings(*watch)))
        self._channel.add_watch(watch)

    def unwatch(self, wpath: Text, token: Text) -> None:
        """Stop watching *wpath* with *token*.  Events of that watch that
        are already queued are dropped too, unless another watch with the
        same token covers their path.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` for an unknown watch.
        """
        watch = (encode_watch_path(wpath), encode_token(token))
        _expect_ok(Op.UNWATCH, self._channel.call(Op.UNWATCH, join_strings(*watch)))
        self._channel.remove_watch(watch)

    def wait(self, sleep: Optional[float] = None,
             timeout: Optional[float] = None) -> Optional[Event]:
        """Return the next event, waiting for it as long as it takes, or
        at most *timeout* seconds.  Waiting costs nothing: no request is
        sent and no CPU is used until XenStore sends something.

        :param sleep: accepted for programs written for pyxs 0.3, where it
            set a polling interval; there is no polling any more.
        :param timeout: seconds to wait at most; None waits for ever.
        :returns: the event, or None when *timeout* passed without one.
        :raises pyxs.exceptions.EventsDropped: once, after events were
            dropped because more than ``max_queued_events`` waited.
        :raises pyxs.exceptions.ConnectionError: when the connection was
            lost and no new one (with the watches registered again) could
            be made within the connection's timeout; the next call tries
            again.  Also once for each watch that XenStore refused to
            register again on a new connection: that watch is gone.  A
            monitor without watches raises as soon as its connection is
            lost.

        .. versionchanged:: 0.5.0
           The *timeout*; no polling.
        """
        packet = self._channel.next_event(timeout)
        if packet is None:
            return None
        # Path and token (an event with fewer strings was refused as it came).
        return Event._make(_texts(packet.payload)[:2])

    def __iter__(self) -> Iterator[Event]:
        """Yield events as they come, for ever.

        .. versionadded:: 0.5.0
        """
        return iter(self.wait, None)
