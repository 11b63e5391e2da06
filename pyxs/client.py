"""The XenStore client: :class:`Client` for requests, :class:`Monitor` for
watches.

Every :class:`Client` and :class:`Monitor` talks through a
:class:`_Channel`, the one place that numbers requests, matches replies
to them and routes watch events.  A channel needs no thread of its own:
whichever caller is waiting reads the connection for everybody (a
"leader/follower" scheme), so a lone caller pays for nothing but its
own round trip, and many threads can share one client safely.
"""

import collections
import copy
import errno
import itertools
import os
import random
import select
import threading
import time
from typing import (Callable, Deque, Dict, Iterable, Iterator, List, NoReturn, Optional,
                    Sequence, Set, Tuple, TypeVar)

from ._internal import HEADER, PAYLOAD_MAX, Event, Op, Packet, PacketDecoder
from .connection import (FileDescriptorConnection, UnixSocketConnection,
                         XenBusConnection, default_socket_path, default_xenbus_path)
from .exceptions import (ConnectionError, InvalidPayload, PyXSError, Timeout,
                         UnexpectedPacket)
from .helpers import (Text, encode_number, encode_path, encode_perms, encode_token,
                      encode_value, encode_watch_path, error, to_bytes, to_text)

__all__ = ["Client", "Monitor"]

T = TypeVar("T")

#: How long a caller waiting for a reply keeps checking for it, yielding
#: the CPU between checks, before it goes to sleep.  A reply usually comes
#: within tens of microseconds, and sleeping and being woken costs more
#: than that on virtual machines (measured 19,000 against 58,000 round
#: trips per second with xenstored on another CPU); with xenstored on the
#: same CPU the yields let it run, so nothing is lost there.  Waiting for
#: watch events never spins.
SPIN_SECONDS = 50e-6

#: How many requests the bulk operations keep in flight at once.
PIPELINE_DEPTH = 64

#: How many times :meth:`Client.run_in_transaction` tries by default.
DEFAULT_TRANSACTION_ATTEMPTS = 16

_OK = b"OK\0"


class _Slot:
    """Where the reply to one request lands."""

    __slots__ = ("op", "generation", "reply", "error")

    def __init__(self, op: Op, generation: int) -> None:
        self.op = op
        self.generation = generation
        self.reply: Optional[Packet] = None
        self.error: Optional[ConnectionError] = None


class _Channel:
    """One connection to XenStore and everything in flight on it.

    All state is guarded by ``_lock``.  At most one thread at a time reads
    the connection (``_reading``); it files each reply in the slot of its
    request and each watch event in ``events``, then wakes the others.
    Any fault fails every pending request and every waiter at once, and
    closes the connection; the next request opens a new one.
    """

    def __init__(self, connection: FileDescriptorConnection) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._decoder = PacketDecoder()
        self._pending: Dict[int, _Slot] = {}
        self._next_id = 0
        self._reading = False
        # Threads asleep on ``_changed``: the reader wakes them only if any.
        self._sleepers = 0
        # Set while the reader still uses a descriptor that has failed.
        self._retiring = False
        # Bumped each time a connection ends: transactions and watches
        # made on an older generation are gone.
        self.generation = 0
        # Why the last connection ended; ``_broken`` until a new one is made.
        self._fault = ConnectionError("not connected")
        self._broken = False
        self.events: Deque[Packet] = collections.deque()
        self.watches: Set[Tuple[bytes, bytes]] = set()
        # A pipe that wakes the reader when the connection must close.
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._poll: Optional[select.poll] = None

    def __del__(self) -> None:
        self.connection.disconnect()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # Connecting and failing, with the lock held.

    def _connect(self, deadline: float) -> None:
        while self._retiring:
            if not self._wait(deadline):
                raise Timeout("timed out waiting for the reader of %r to let go"
                              % self.connection.path)
        if not self.connection.is_connected:
            self.connection.connect()
            self._poll = select.poll()
            self._poll.register(self.connection.fileno(), select.POLLIN)
            self._poll.register(self._wake_r, select.POLLIN)
            self._decoder = PacketDecoder()
            self._broken = False

    def _fail(self, fault: ConnectionError) -> None:
        """End the connection: every pending request and every waiter
        gets *fault*."""
        if not self.connection.is_connected or self._retiring:
            return
        self.generation += 1
        self._fault, self._broken = fault, True
        for slot in self._pending.values():
            slot.error = fault
        self._pending.clear()
        self.watches.clear()
        if self._reading:
            # The reader may be polling the descriptor: let it close it.
            self._retiring = True
            os.write(self._wake_w, b"x")
        else:
            self._disconnect()
        self._changed.notify_all()

    def _disconnect(self) -> None:
        self.connection.disconnect()
        self._poll = None

    def _wait(self, deadline: Optional[float]) -> bool:
        """Sleep until woken or *deadline*; False if it passed."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        self._sleepers += 1
        try:
            return self._changed.wait(remaining) or remaining is None \
                or time.monotonic() < deadline
        finally:
            self._sleepers -= 1

    def _deadline(self) -> float:
        return time.monotonic() + self.connection.timeout

    # Public entry points.

    def connect(self) -> None:
        with self._lock:
            self._connect(self._deadline())

    def close(self) -> None:
        with self._lock:
            self._fail(ConnectionError("the connection to %r was closed"
                                       % self.connection.path))

    def submit(self, requests: Sequence[Tuple[Op, bytes]], tx_id: int = 0,
               generation: Optional[int] = None) -> List[_Slot]:
        """Send requests, in one write, and return the slots their replies
        will land in.

        :param generation: if given, the requests belong to a transaction
            made on that connection generation, and must not be sent on a
            later connection.
        """
        for _, payload in requests:
            if len(payload) > PAYLOAD_MAX:
                raise InvalidPayload("a request of %d bytes is over XenStore's limit of %d"
                                     % (len(payload), PAYLOAD_MAX))
        with self._lock:
            if generation is not None and generation != self.generation:
                raise ConnectionError("the connection that carried this transaction "
                                      "was lost, and the transaction with it")
            if self.connection.fd is None or self._retiring:
                self._connect(self._deadline())
            frames, slots = [], []
            for op, payload in requests:
                rq_id = self._next_id
                self._next_id = (rq_id + 1) & 0xFFFFFFFF
                slots.append(_Slot(op, self.generation))
                self._pending[rq_id] = slots[-1]
                frames.append(HEADER.pack(op, rq_id, tx_id, len(payload)))
                frames.append(payload)
            try:
                self.connection.send(b"".join(frames), self.connection.timeout)
            except ConnectionError as e:
                self._fail(e)
                raise
            except BaseException:
                # Interrupted part-way, the stream is no longer framed.
                self._fail(ConnectionError("a write to %r was interrupted"
                                           % self.connection.path))
                raise
            return slots

    def result(self, slot: _Slot) -> bytes:
        """Wait for the reply in *slot* and return its payload.

        :raises pyxs.exceptions.PyXSError: for an error reply.
        :raises pyxs.exceptions.ConnectionError: when the connection
            failed or the call timed out.
        """
        if slot.reply is None and slot.error is None:
            deadline = self._deadline()
            with self._lock:
                if not self._serve(lambda: slot.reply is not None or slot.error is not None,
                                   deadline, spin=True):
                    self._fail(Timeout("no reply from %r within %gs"
                                       % (self.connection.path, self.connection.timeout)))
        if slot.error is not None:
            _raise_copy(slot.error)
        reply = slot.reply
        if reply.op is Op.ERROR:
            raise error(reply.payload.rstrip(b"\0"))
        return reply.payload

    def call(self, op: Op, payload: bytes, tx_id: int = 0,
             generation: Optional[int] = None) -> bytes:
        return self.result(self.submit([(op, payload)], tx_id, generation)[0])

    def next_event(self, timeout: Optional[float]) -> Optional[Packet]:
        """Take the next watch event, waiting up to *timeout* seconds
        (forever when ``None``); None if none came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not self.events:
                # Events queued before a fault are still handed out first.
                if self._broken:
                    _raise_copy(self._fault)
                self._connect(self._deadline())
                generation = self.generation
                self._serve(lambda: bool(self.events) or self.generation != generation,
                            deadline)
                if not self.events:
                    if self.generation != generation:
                        _raise_copy(self._fault)
                    return None
            return self.events.popleft()

    def add_watch(self, watch: Tuple[bytes, bytes]) -> None:
        with self._lock:
            self.watches.add(watch)

    def remove_watch(self, watch: Tuple[bytes, bytes]) -> None:
        """Forget a watch that XenStore has removed, and drop its queued
        events, unless another watch with the same token sees them too
        (as libxenstore's unwatch filter does)."""
        wpath, token = watch
        with self._lock:
            self.watches.discard(watch)
            rivals = [p for p, t in self.watches if t == token]

            def keep(event: Packet) -> bool:
                path, event_token = _split(event.payload)[:2]
                return (event_token != token or not _covers(wpath, path)
                        or any(_covers(p, path) for p in rivals))
            kept = [event for event in self.events if keep(event)]
            self.events.clear()
            self.events.extend(kept)

    # Reading, with the lock held.

    def _serve(self, done: Callable[[], bool], deadline: Optional[float],
               spin: bool = False) -> bool:
        """Return once ``done()`` is true, reading the connection for
        everybody whenever no other thread is; False if *deadline* (a
        :func:`time.monotonic` value, or None for never) passed first.
        With *spin*, a reply is expected soon: see :data:`SPIN_SECONDS`."""
        while not done():
            if self._reading:
                if not self._wait(deadline):
                    return done()
            elif not self._read(deadline, spin):
                return done()
        return True

    def _read(self, deadline: Optional[float], spin: bool) -> bool:
        """Be the reader once: wait for data until *deadline* and dispatch
        what came.  False if the deadline passed with nothing read."""
        connection, poll = self.connection, self._poll
        ready, data, fault = False, b"", None
        self._reading = True
        self._lock.release()
        try:
            data = _spin(connection) if spin else b""
            ready = bool(data)
            if not ready:
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                ready = bool(poll.poll(None if timeout is None else timeout * 1000))
                data = connection.read() if ready else b""
        except ConnectionError as e:
            fault = e
        finally:
            interrupted = _relock(self._lock)
            self._reading = False
            if self._sleepers:
                self._changed.notify_all()
        try:
            return self._dispatch(ready, data, fault)
        finally:
            if interrupted is not None:
                raise interrupted

    def _dispatch(self, ready: bool, data: bytes, fault: Optional[ConnectionError]) -> bool:
        """File what the reader got, with the lock held; see :meth:`_read`."""
        connection = self.connection
        if self._retiring:
            self._retiring = False
            self._disconnect()
            try:
                os.read(self._wake_r, 64)  # The one byte _fail wrote.
            except BlockingIOError:
                pass
            return True
        if fault is not None:
            self._fail(fault)
            return True
        if not ready:
            return False
        try:
            packets = self._decoder.feed(data)
        except UnexpectedPacket as e:
            self._fail(e)
            return True
        for packet in packets:
            if packet.op is Op.WATCH_EVENT:
                if packet.payload.count(b"\0") < 2:
                    self._fail(UnexpectedPacket("%r sent a malformed watch event %r"
                                                % (connection.path, packet.payload)))
                    return True
                self.events.append(packet)
                continue
            slot = self._pending.pop(packet.rq_id, None)
            if slot is None or (packet.op is not slot.op and packet.op is not Op.ERROR):
                fault = UnexpectedPacket("%r sent %s for request %d, %s" % (
                    connection.path, packet.op.name, packet.rq_id,
                    "which was never made" if slot is None else "which was %s" % slot.op.name))
                if slot is not None:
                    slot.error = fault
                self._fail(fault)
                return True
            slot.reply = packet
        return True


def _relock(lock: threading.Lock) -> Optional[BaseException]:
    """Take *lock* back even if a signal handler raises meanwhile (CPython
    lets signals interrupt a blocked acquire), and return what it raised:
    the reader must not leave the channel, or the bytes it read, behind."""
    raised = None
    while True:
        try:
            lock.acquire()
            return raised
        except BaseException as e:
            raised = e


def _spin(connection: FileDescriptorConnection) -> bytes:
    """Check for a reply for up to :data:`SPIN_SECONDS`, yielding the CPU
    in between; ``b""`` if none came."""
    end = time.monotonic() + SPIN_SECONDS
    while True:
        data = connection.read()
        if data or time.monotonic() > end:
            return data
        os.sched_yield()


def _raise_copy(fault: ConnectionError) -> NoReturn:
    """Raise a fresh copy of a fault that many callers share, so that each
    gets a traceback of its own; the cause (an OSError, say) is kept."""
    raise type(fault)(*fault.args) from fault.__cause__


def _join(*parts: bytes) -> bytes:
    """A payload of NUL-terminated strings."""
    return b"\0".join(parts) + b"\0"


def _expect_ok(op: Op, reply: bytes) -> None:
    if reply != _OK:
        raise UnexpectedPacket("XenStore answered %s with %r instead of OK" % (op.name, reply))


def _split(payload: bytes) -> List[bytes]:
    """The NUL-terminated strings of a payload."""
    return payload.split(b"\0")[:-1] if payload else []


_User = TypeVar("_User", bound="_ChannelUser")


class _ChannelUser:
    """What :class:`Client` and :class:`Monitor` share: a channel, either
    their own or borrowed from the client they were made from."""

    _channel: _Channel
    _owns_channel: bool

    def _attach(self, channel: _Channel, owns_channel: bool) -> None:
        self._channel = channel
        self._owns_channel = owns_channel

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
        made on it.  The next call connects again."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self: "_User") -> "_User":
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    """

    def __init__(self, unix_socket_path: Optional[str] = None,
                 socket_timeout: Optional[float] = None,
                 xen_bus_path: Optional[str] = None,
                 connection: Optional[FileDescriptorConnection] = None,
                 transaction: Optional[bool] = None) -> None:
        if connection is None:
            if unix_socket_path is None and xen_bus_path is None:
                if (not os.path.exists(default_socket_path())
                        and os.path.exists(default_xenbus_path())):
                    xen_bus_path = default_xenbus_path()
            if xen_bus_path is not None and unix_socket_path is None:
                connection = XenBusConnection(xen_bus_path, socket_timeout)
            else:
                connection = UnixSocketConnection(unix_socket_path, socket_timeout)
        self._setup(_Channel(connection), owns_channel=True)
        if transaction:
            self.transaction_start()

    def _setup(self, channel: _Channel, owns_channel: bool) -> None:
        self._attach(channel, owns_channel)
        self._tx_lock = threading.Lock()
        #: The transaction this client works in; 0 when none.
        self.tx_id = 0
        self._tx_generation = 0
        self._monitor: Optional[Monitor] = None

    @classmethod
    def _sharing(cls, channel: _Channel) -> "Client":
        client = cls.__new__(cls)
        client._setup(channel, owns_channel=False)
        return client

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

    def _submit(self, requests: Sequence[Tuple[Op, bytes]]) -> List[_Slot]:
        tx_id = self.tx_id
        return self._channel.submit(requests, tx_id, self._tx_generation if tx_id else None)

    def _call(self, op: Op, payload: bytes) -> bytes:
        return self._channel.result(self._submit([(op, payload)])[0])

    def _ack(self, op: Op, payload: bytes) -> None:
        _expect_ok(op, self._call(op, payload))

    # Nodes.

    def read_bytes(self, path: Text) -> bytes:
        """Return the value of *path* exactly as XenStore holds it.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when there is no
            such node, ``EACCES`` when it may not be read.
        """
        return self._call(Op.READ, _join(encode_path(path)))

    def read(self, path: Text) -> str:
        """Return the value of *path* as text (see the class notes on how
        bytes that are not UTF-8 are kept).

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when there is no
            such node, ``EACCES`` when it may not be read.
        """
        return to_text(self.read_bytes(path))

    def write(self, path: Text, value: object) -> None:
        """Set the value of *path*, creating it and any missing parents.

        :param value: bytes are written as they are, str as UTF-8, and
            anything else as its ``str()``.
        """
        self._ack(Op.WRITE, encode_path(path) + b"\0" + encode_value(value))

    def mkdir(self, path: Text) -> None:
        """Make sure *path* exists, creating it and any missing parents
        with empty values; existing nodes keep their values."""
        self._ack(Op.MKDIR, _join(encode_path(path)))

    def rm(self, path: Text) -> None:
        """Remove *path* and everything below it.  A missing node is not
        an error as long as its parent exists.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` when the parent is
            missing too.
        """
        self._ack(Op.RM, _join(encode_path(path)))

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
            return [to_text(name) for name in _split(self._call(Op.DIRECTORY, _join(raw)))]
        except PyXSError as e:
            if e.errno != errno.E2BIG:
                raise
        return [to_text(name) for name in self._list_in_parts(raw)]

    def _list_in_parts(self, raw_path: bytes) -> List[bytes]:
        # Each part starts with the directory's generation count; a change
        # of it means the directory changed under us: start again.
        while True:
            names: List[bytes] = []
            offset, generation = 0, None
            while True:
                part = self._call(Op.DIRECTORY_PART, _join(raw_path, b"%d" % offset))
                count, _, listing = part.partition(b"\0")
                if generation is None:
                    generation = count
                elif count != generation:
                    break
                if listing in (b"", b"\0"):
                    return names
                complete = listing.endswith(b"\0\0")
                entries = _split(listing[:-1] if complete else listing)
                names.extend(entries)
                if complete:
                    return names
                offset += sum(len(name) + 1 for name in entries)

    def get_permissions(self, path: Text) -> List[str]:
        """Return the permissions of *path*, such as ``["n0", "r5"]``: the
        owner's entry first (its letter is the access of domains not
        listed), then one per domain.  Special paths are accepted."""
        return [to_text(p) for p in _split(self._call(Op.GET_PERMS,
                                                      _join(encode_watch_path(path))))]

    def set_permissions(self, path: Text, perms: Sequence[Text]) -> None:
        """Replace the permissions of *path* (see :meth:`get_permissions`).

        :raises pyxs.exceptions.InvalidPermission: for a malformed list,
            before anything is sent.
        """
        self._ack(Op.SET_PERMS, _join(encode_watch_path(path), *encode_perms(perms)))

    __getitem__ = read
    __setitem__ = write
    __delitem__ = rm

    def read_many(self, paths: Iterable[Text]) -> List[Optional[str]]:
        """Read many nodes at once, keeping up to :data:`PIPELINE_DEPTH`
        requests in flight on the connection, which is much faster than
        reading them one by one.

        :returns: the values, in the order of *paths*; None for a node
            that does not exist.
        :raises pyxs.exceptions.PyXSError: for any other error reply.
        """
        payloads = [_join(encode_path(path)) for path in paths]
        values: List[Optional[str]] = []
        for start in range(0, len(payloads), PIPELINE_DEPTH):
            for slot in self._submit([(Op.READ, payload) for payload
                                      in payloads[start:start + PIPELINE_DEPTH]]):
                try:
                    values.append(to_text(self._channel.result(slot)))
                except PyXSError as e:
                    if e.errno != errno.ENOENT:
                        raise
                    values.append(None)
        return values

    def walk(self, top: Text, topdown: bool = True) -> Iterator[Tuple[str, str, List[str]]]:
        """Walk the tree below *top* like :func:`os.walk`, yielding
        ``(path, value, children)`` for every node.

        With *topdown* true a node comes before its children, and removing
        names from ``children`` in place keeps the walk out of them; with
        *topdown* false every node comes after all of its descendants.
        Nodes that vanish or may not be read during the walk are skipped.
        The walk reads ahead, with many requests in flight at once.
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
            prefix = path.rstrip("/") + "/"
            child_paths = [prefix + child for child in children]
            reader.expect(child_paths)
            stack.extend((child, None) for child in reversed(child_paths))

    # Domains.

    def get_domain_path(self, domid: int) -> str:
        """Return the home path of a domain, ``/local/domain/<domid>``.
        XenStore does not check that the domain exists."""
        return to_text(self._call(Op.GET_DOMAIN_PATH,
                                  _join(encode_number(domid, "domid"))).rstrip(b"\0"))

    def is_domain_introduced(self, domid: int) -> bool:
        """Whether XenStore is talking to the domain: it was introduced and
        has been neither released nor destroyed since."""
        return self._call(Op.IS_DOMAIN_INTRODUCED,
                          _join(encode_number(domid, "domid"))) == b"T\0"

    def introduce_domain(self, domid: int, mfn: int, eventchn: int) -> None:
        """Tell XenStore to talk to a domain through its XenStore page
        (machine frame *mfn*) and event channel *eventchn*.

        :param domid: the domain; 0, the control domain, is refused, since
            XenStore set it up at start.
        """
        raw_domid = encode_number(domid, "domid")
        if int(raw_domid) == 0:
            raise InvalidPayload("domain 0 cannot be introduced")
        self._ack(Op.INTRODUCE, _join(raw_domid, encode_number(mfn, "mfn"),
                                      encode_number(eventchn, "eventchn")))

    def release_domain(self, domid: int) -> None:
        """Tell XenStore to stop talking to a domain (it also does so by
        itself when the domain dies)."""
        self._ack(Op.RELEASE, _join(encode_number(domid, "domid")))

    def resume_domain(self, domid: int) -> None:
        """Clear a domain's shutdown flag, so that its next shutdown fires
        the watches again."""
        self._ack(Op.RESUME, _join(encode_number(domid, "domid")))

    def set_target(self, domid: int, target: int) -> None:
        """Let *domid* act for *target*: it gets full access to what
        *target* owns and every permission *target* has (as a device
        model domain needs)."""
        self._ack(Op.SET_TARGET, _join(encode_number(domid, "domid"),
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
            tx_id = int(self._channel.result(slot).rstrip(b"\0"))
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
        client = Client._sharing(self._channel)
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
            time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** attempt)))
        raise AssertionError("unreachable")

    # Watches.

    def monitor(self) -> "Monitor":
        """Return a :class:`Monitor` on a connection of its own."""
        return Monitor(copy.copy(self.connection))

    def _own_monitor(self) -> "Monitor":
        if self._monitor is None:
            self._monitor = Monitor._sharing(self._channel)
        return self._monitor

    def watch(self, wpath: Text, token: Text) -> None:
        """Watch *wpath* on this client's connection; see
        :meth:`Monitor.watch`."""
        self._own_monitor().watch(wpath, token)

    def unwatch(self, wpath: Text, token: Text) -> None:
        """Stop a watch made with :meth:`watch`; see :meth:`Monitor.unwatch`."""
        self._own_monitor().unwatch(wpath, token)

    def wait(self, sleep: Optional[float] = None,
             timeout: Optional[float] = None) -> Optional[Event]:
        """Wait for an event of this client's watches; see
        :meth:`Monitor.wait`."""
        return self._own_monitor().wait(sleep, timeout)


class _TreeReader:
    """Fetch the value and children of nodes ahead of a depth-first walk.

    ``_ahead`` holds the paths still to visit, in visiting order; the
    first :data:`PIPELINE_DEPTH` // 2 of them are kept in flight (two
    requests each), topped up in one write whenever half are missing, so
    the walk rarely waits for a round trip.
    """

    _WINDOW = PIPELINE_DEPTH // 2

    def __init__(self, client: Client) -> None:
        self._client = client
        self._ahead: Deque[str] = collections.deque()
        self._in_flight: Dict[str, List[_Slot]] = {}

    def expect(self, paths: Sequence[str]) -> None:
        """Queue *paths* to be visited next, in order, before any path
        queued earlier (the walk is depth-first)."""
        self._ahead.extendleft(reversed(paths))
        self._top_up()

    def take(self, path: str) -> Tuple[str, List[str]]:
        """Return the value and children of *path*, the next path to visit."""
        if self._ahead and self._ahead[0] == path:
            self._ahead.popleft()
        slots = self._in_flight.pop(path, None)
        if slots is None:
            slots = self._send([path])[path]
        self._top_up()
        listing_slot, value_slot = slots
        channel = self._client._channel
        try:
            children = [to_text(name) for name in _split(channel.result(listing_slot))]
        except PyXSError as e:
            if e.errno != errno.E2BIG:
                raise
            children = self._client.ls(path)
        return to_text(channel.result(value_slot)), children

    def _top_up(self) -> None:
        missing = [p for p in itertools.islice(self._ahead, self._WINDOW)
                   if p not in self._in_flight]
        if missing and (missing[0] == self._ahead[0] or len(missing) * 2 >= self._WINDOW):
            self._in_flight.update(self._send(missing))

    def _send(self, paths: List[str]) -> Dict[str, List[_Slot]]:
        requests = []
        for path in paths:
            payload = _join(to_bytes(path, "path"))
            requests += [(Op.DIRECTORY, payload), (Op.READ, payload)]
        slots = self._client._submit(requests)
        return {path: slots[2 * i:2 * i + 2] for i, path in enumerate(paths)}


class Monitor(_ChannelUser):
    """Watches on XenStore, and the events they produce.

    :meth:`Client.monitor` gives a monitor with a connection of its own::

        with client.monitor() as m:
            m.watch("/vm", "vm-changed")
            for event in m:
                print(event.path, event.token)

    :param connection: the (not yet connected) connection to use.
    """

    def __init__(self, connection: FileDescriptorConnection) -> None:
        self._attach(_Channel(connection), owns_channel=True)

    @classmethod
    def _sharing(cls, channel: _Channel) -> "Monitor":
        monitor = cls.__new__(cls)
        monitor._attach(channel, owns_channel=False)
        return monitor

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
        _expect_ok(Op.WATCH, self._channel.call(Op.WATCH, _join(*watch)))
        self._channel.add_watch(watch)

    def unwatch(self, wpath: Text, token: Text) -> None:
        """Stop watching *wpath* with *token*.  Events of that watch that
        are already queued are dropped too, unless another watch with the
        same token covers their path.

        :raises pyxs.exceptions.PyXSError: ``ENOENT`` for an unknown watch.
        """
        watch = (encode_watch_path(wpath), encode_token(token))
        _expect_ok(Op.UNWATCH, self._channel.call(Op.UNWATCH, _join(*watch)))
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
        :raises pyxs.exceptions.ConnectionError: when the connection is
            lost; its watches are lost with it.
        """
        packet = self._channel.next_event(timeout)
        if packet is None:
            return None
        path, token = _split(packet.payload)[:2]
        return Event(to_text(path), to_text(token))

    def __iter__(self) -> Iterator[Event]:
        """Yield events as they come, for ever."""
        return iter(self.wait, None)


def _covers(wpath: bytes, path: bytes) -> bool:
    """Whether a watch on *wpath* sees a change of *path*."""
    return path == wpath or path.startswith(wpath.rstrip(b"/") + b"/")
