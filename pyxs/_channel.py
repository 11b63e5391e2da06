"""The channel: one connection to XenStore and everything in flight on it.

:class:`Channel` is the one place that numbers requests, matches replies
to them and routes watch events; :class:`~pyxs.client.Client` and
:class:`~pyxs.client.Monitor` are thin layers over it.

Theory of operation
-------------------

*Reading.*  Whichever thread waits for something reads the connection
for everybody (a "leader/follower" scheme): it files each reply in the
slot of its request and each watch event in :attr:`Channel.events`, then
wakes the others.  A lone caller thus pays for nothing but its own round
trip, and many threads can share one channel.

*Draining.*  A connection that carries watches must also be read while
nobody waits, or XenStore keeps the events: oxenstored then stops
serving other clients' writes and drops events, C xenstored hoards them
in its own memory.  So while a channel has at least one watch, a
*drainer* thread reads it whenever no caller does.  A caller that needs
the connection asks the drainer to step aside (one byte on the wake
pipe) and then reads for itself, keeping the fast path; the drainer
comes back :data:`DRAIN_DELAY` after the last caller stopped reading.  A
channel without watches has no thread.

*Faults.*  Any fault (end of stream, a malformed message, a timeout)
fails every pending request and every waiter at once and closes the
connection.  Watches outlive it: the drainer connects again at once and
re-registers them, and XenStore answers each new watch with an event
for its path, the consumer's cue to re-read.  Transactions do not
survive: :attr:`Channel.generation` counts connections, and a request
of a transaction made on an older one is refused.

*Forks.*  After :func:`os.fork` a channel in the child forgets its
parent's connection, watches and queued events, and connects afresh on
first use, so parent and child never share a stream.
"""

from __future__ import annotations

import collections
import enum
import errno
import os
import select
import threading
import time
import weakref
from typing import (TYPE_CHECKING, Callable, Deque, Dict, List, NoReturn, Optional, Sequence,
                    Tuple)

from ._cnumbers import u32
from ._internal import Op, Packet, PacketDecoder, encode_frame, join_strings, split_strings
from .connection import FileDescriptorConnection, MessageRefused, wakeup_pipe
from .exceptions import (ConnectionError, EventsDropped, InvalidPayload, Timeout,
                         UnexpectedPacket)
from .helpers import error

if TYPE_CHECKING:
    import logging

__all__ = ["Channel", "Slot", "SPIN_SECONDS", "SPIN_BACKOFF_MAX", "DRAIN_DELAY", "covers",
           "forget_parent_after_fork"]

_logger: "Optional[logging.Logger]" = None


def log() -> "logging.Logger":
    """The ``pyxs`` logger, set up on first use: :mod:`logging` costs a
    few milliseconds to import, and most programs never connect twice."""
    global _logger
    if _logger is None:
        import logging
        logger = logging.getLogger("pyxs")
        # Silent unless the application configures logging (no "last
        # resort" output on stderr).
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        _logger = logger
    return _logger

#: How long a caller waiting for a reply keeps checking for it before it
#: goes to sleep.  With XenStore on another CPU a reply usually comes
#: within tens of microseconds, and sleeping and being woken costs more
#: than that on virtual machines (measured 19,000 against 58,000 round
#: trips per second).  The caller keeps its CPU meanwhile: giving it away
#: (sched_yield) to a busy process sharing it cost a whole time slice per
#: call (300 reads per second instead of thousands).  Where spinning does
#: not pay (XenStore on the same CPU, which must sleep to let it answer),
#: a channel soon stops: see :data:`SPIN_BACKOFF_MAX`.  Waiting for watch
#: events never spins.
SPIN_SECONDS = 50e-6

#: After a spin that saw no reply, a channel sleeps at once for its next
#: call, then for the next 2, 4 ... up to this many calls before it tries
#: spinning again; one spin that sees its reply resets it.  With XenStore
#: on the caller's CPU, spinning then costs 50 us every 1,024 calls (0.05
#: us a call; 256 cost 3% of a call), and when XenStore moves to another
#: CPU the channel starts spinning again within some tens of milliseconds.
SPIN_BACKOFF_MAX = 1024

# Time off the CPU during a spin that means the spinning thread was
# preempted.
_PREEMPTED = 10e-6

#: How long the drainer stays away after a caller last read the
#: connection.  Long enough that a busy caller displaces it about once
#: per burst, not once per call; short enough that XenStore never holds
#: many events meanwhile (at 50,000 events/s, 500, where oxenstored
#: starts refusing service after about 2,000).
DRAIN_DELAY = 0.01

#: How long a caller waits for the drainer to step aside past its own
#: deadline (it does so as soon as it is scheduled).
_DRAINER_GRACE = 1.0

#: Who holds the reading role.
_CALLER, _DRAINER = "caller", "drainer"

Watch = Tuple[bytes, bytes]


class _State(enum.Enum):
    #: No connection yet; the next use connects.
    IDLE = "idle"
    #: Connected.
    OPEN = "open"
    #: Failed, but a reader still polls the descriptor: it closes it.
    RETIRING = "retiring"
    #: Failed or closed (see ``Channel._fault``); the next request connects.
    BROKEN = "broken"


# The states as plain names: the request path tests them on every call
# (as it does the two operations below; an enum member's lookup costs
# more than a global's).
_IDLE, _OPEN, _RETIRING, _BROKEN = _State.IDLE, _State.OPEN, _State.RETIRING, _State.BROKEN
_ERROR, _WATCH_EVENT = Op.ERROR, Op.WATCH_EVENT


class Slot:
    """Where the reply to one request lands."""

    __slots__ = ("op", "tx_id", "generation", "reply", "error", "rewatch")

    def __init__(self, op: Op, tx_id: int, generation: int,
                 rewatch: Optional[Watch] = None) -> None:
        self.op = op
        self.tx_id = tx_id
        self.generation = generation
        self.reply: Optional[Packet] = None
        self.error: Optional[ConnectionError] = None
        #: The watch this request registers again after a reconnection;
        #: nobody waits for its reply.
        self.rewatch = rewatch

    def settled(self) -> bool:
        """Whether the reply, or the error that stands for it, is here."""
        return self.reply is not None or self.error is not None


class Channel:
    """One connection to XenStore and everything in flight on it.

    All state is guarded by ``_lock``.

    :param connection: the transport, not yet connected.
    :param max_queued_events: how many watch events may wait in
        :attr:`events` at once; None for no limit.  Events beyond it are
        dropped and counted, and the next :meth:`next_event` raises
        :exc:`~pyxs.exceptions.EventsDropped`.
    :ivar restore_watches: whether watches are registered again on a new
        connection after a fault (the :mod:`xen.lowlevel.xs` stand-in,
        like libxenstore, does not).
    :ivar on_event: called, with the lock held, whenever an event is queued.
    """

    def __init__(self, connection: FileDescriptorConnection,
                 max_queued_events: Optional[int] = None) -> None:
        self.connection = connection
        self._wake_r = self._wake_w = -1
        if max_queued_events is not None and max_queued_events < 1:
            raise ValueError("max_queued_events must be at least 1, not %r"
                             % (max_queued_events,))
        self.max_queued_events = max_queued_events
        self.restore_watches = True
        self.on_event: Optional[Callable[[], None]] = None
        self._reset()
        _LIVE_CHANNELS.add(self)

    def _reset(self) -> None:
        """Start from scratch: a new lock, no connection, nothing pending."""
        self._lock = threading.Lock()
        # Callers and event waiters sleep here; the drainer apart, so that
        # callers do not wake it at every reply.
        self._changed = threading.Condition(self._lock)
        self._drainer_wakeup = threading.Condition(self._lock)
        self._decoder = PacketDecoder()
        self._pending: Dict[int, Slot] = {}
        self._next_id = 0
        self._state = _IDLE
        self._fault = ConnectionError("not connected to %r" % self.connection.path)
        #: Bumped each time a connection ends: transactions made on an
        #: older generation are gone.
        self.generation = 0
        # Who reads the connection now: None, _CALLER or _DRAINER.
        self._reader: Optional[str] = None
        # Callers and waiters asleep on _changed: woken only if any.
        self._sleepers = 0
        self.events: Deque[Packet] = collections.deque()
        #: Events dropped since the last :meth:`next_event` said so.
        self.dropped = 0
        # The watches XenStore holds for us, in the order they were made
        # (a dict used as an ordered set).
        self.watches: Dict[Watch, None] = {}
        self._drainer: Optional[threading.Thread] = None
        self._drainer_parked = False
        self._drainer_yield = False
        self._recovery_wanted = False
        self._recovery_failures = 0
        # Watches XenStore refused to make again that no waiter has been
        # told of yet: each next_event raises the first.
        self._refusals_untold: Deque[ConnectionError] = collections.deque()
        self._last_read = 0.0
        # A pipe that wakes whoever polls the connection: to close it, or
        # to make the drainer step aside.  It holds a byte while _poked.
        self._poked = False
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r, self._wake_w = wakeup_pipe()
        self._poll: Optional[select.poll] = None
        # Calls left that sleep for their reply without spinning first,
        # and how many the next spin that sees nothing will make so.
        self._spin_skips = 0
        self._spin_backoff = 1

    def __del__(self) -> None:
        self.connection.disconnect()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)

    def _forget_parent(self) -> None:
        """In a child after :func:`os.fork`: drop what belongs to the
        parent (its connection, watches, events, transactions)."""
        fd, self.connection.fd = self.connection.fd, None
        if fd is not None:
            try:
                os.close(fd)  # Our copy only: the parent's stays open.
            except OSError:
                pass
        generation = self.generation
        self._reset()
        self.generation = generation + 1

    # Connecting and failing, with the lock held.

    def _connect(self, deadline: float) -> None:
        while self._state is _RETIRING:
            if not self._wait(deadline):
                raise Timeout("timed out waiting for the reader of %r to let go"
                              % self.connection.path)
        if self._state is _OPEN:
            return
        reconnecting = self._state is _BROKEN
        self.connection.connect()
        self._poll = select.poll()
        self._poll.register(self.connection.fileno(), select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)
        self._decoder = PacketDecoder()
        self._state = _OPEN
        log().debug("connected to %r%s", self.connection.path,
                    " again" if reconnecting else "")
        if self.watches:
            self._send_rewatches()
        if self._sleepers:
            self._changed.notify_all()

    def _send_rewatches(self) -> None:
        """Register every watch again on a new connection.  The replies
        are checked as they come (see :meth:`_file`)."""
        frames, slots = zip(*[self._frame(Op.WATCH, join_strings(*watch), 0, rewatch=watch)
                              for watch in self.watches])
        log().info("registering %d watch(es) again on %r", len(frames), self.connection.path)
        self._send(b"".join(frames), slots)

    def _send(self, data: bytes, slots: Sequence[Slot]) -> None:
        """Write the messages of *data*, whose replies land in *slots*."""
        try:
            self.connection.send(data, self.connection.timeout)
        except MessageRefused as e:
            # A guest's device refused one message and dropped it: it is
            # answered with the error, and the stream is intact.
            self._refuse(slots[e.index], e.errno)
            if e.rest:
                self._send(e.rest, slots[e.index + 1:])
        except ConnectionError as e:
            self._fail(e)
            raise
        except BaseException:
            # Interrupted part-way, the stream is no longer framed.
            self._fail(ConnectionError("a write to %r was interrupted" % self.connection.path))
            raise

    def _refuse(self, slot: Slot, code: int) -> None:
        """Answer the request of *slot*, never sent, with error *code*."""
        # The slot was made by _frame under the same hold of the lock, so
        # it is pending.
        rq_id = next(rq_id for rq_id, pending in self._pending.items() if pending is slot)
        del self._pending[rq_id]
        name = errno.errorcode.get(code, "EINVAL").encode("ascii") + b"\0"
        slot.reply = Packet(Op.ERROR, name, rq_id, slot.tx_id)
        if slot.rewatch is not None:
            self._rewatch_refused(slot.rewatch, name)

    def _fail(self, fault: ConnectionError) -> None:
        """End the connection: every pending request and every waiter
        gets *fault*; watches are restored on a new connection."""
        if self._state is not _OPEN:
            return
        log().debug("connection to %r ended: %s", self.connection.path, fault)
        self.generation += 1
        self._fault = fault
        for slot in self._pending.values():
            slot.error = fault
        self._pending.clear()
        if self._reader is not None:
            # The reader may be polling the descriptor: let it close it.
            self._state = _RETIRING
            self._poke()
        else:
            self._disconnect()
        if not self.restore_watches:
            self.watches.clear()
        self._recovery_wanted = bool(self.watches)
        self._changed.notify_all()
        self._drainer_wakeup.notify()

    def _disconnect(self) -> None:
        self.connection.disconnect()
        self._poll = None
        self._state = _BROKEN

    def _poke(self) -> None:
        """Wake whoever polls the connection."""
        if not self._poked:
            self._poked = True
            os.write(self._wake_w, b"x")

    def _wait(self, deadline: Optional[float]) -> bool:
        """Sleep until woken or *deadline*; False if it passed."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        self._sleepers += 1
        try:
            return self._changed.wait(remaining) or remaining is None \
                or time.monotonic() < deadline  # type: ignore[operator]
        finally:
            self._sleepers -= 1

    def _deadline(self) -> float:
        return time.monotonic() + self.connection.timeout

    @property
    def awaited(self) -> int:
        """Requests sent and not yet answered (as far as read so far)."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return self._decoder.pending

    # Public entry points.

    def connect(self) -> None:
        with self._lock:
            self._connect(self._deadline())

    def close(self) -> None:
        """Close the connection and forget every watch; the next request
        connects again."""
        with self._lock:
            self.watches.clear()
            self._fail(ConnectionError("the connection to %r was closed"
                                       % self.connection.path))
            self._recovery_wanted = False
            self._drainer_wakeup.notify()
            # The reader (the drainer, often) closes the descriptor as it
            # lets go; it does so at once, being woken for it.
            deadline = self._deadline()
            while self._state is _RETIRING and self._wait(deadline):
                pass

    def submit(self, requests: Sequence[Tuple[Op, bytes]], tx_id: int = 0,
               generation: Optional[int] = None) -> List[Slot]:
        """Send requests, in one write, and return the slots their replies
        will land in.

        :param generation: if given, the requests belong to a transaction
            made on that connection generation, and must not be sent on a
            later connection.
        """
        for _, payload in requests:
            self.check_size(payload)
        with self._lock:
            self._ready_for(generation)
            framed = [self._frame(op, payload, tx_id) for op, payload in requests]
            slots = [slot for _, slot in framed]
            self._send(b"".join([frame for frame, _ in framed]), slots)
            return slots

    def reply(self, slot: Slot) -> Packet:
        """Wait for the reply in *slot* and return it, an ``ERROR`` reply
        included: what its error name means is for the caller to decide
        (see :func:`pyxs._internal.client_errno` and
        :func:`~pyxs._internal.libxenstore_errno`).

        :raises pyxs.exceptions.ConnectionError: when the connection
            failed or the call timed out.
        """
        if slot.reply is None and slot.error is None:
            with self._lock:
                self._await(slot)
        return _reply(slot)

    def result(self, slot: Slot) -> bytes:
        """Wait for the reply in *slot* and return its payload, an error
        reply read as :class:`~pyxs.client.Client` reads it.

        :raises pyxs.exceptions.PyXSError: for an error reply.
        :raises pyxs.exceptions.ConnectionError: when the connection
            failed or the call timed out.
        """
        return _payload(slot.reply or self.reply(slot))

    def call(self, op: Op, payload: bytes, tx_id: int = 0,
             generation: Optional[int] = None) -> bytes:
        """Send one request and return its reply's payload: :meth:`submit`
        and :meth:`result` in one, the lock taken once."""
        if len(payload) > self.connection.payload_max:
            self.check_size(payload)
        with self._lock:
            if generation is not None or self._state is not _OPEN:
                self._ready_for(generation)
            frame, slot = self._frame(op, payload, tx_id)
            self._send(frame, (slot,))
            if slot.reply is None and slot.error is None:
                self._await(slot)
        return _payload(_reply(slot))

    def check_size(self, payload: bytes) -> None:
        """Refuse a request payload over what the connection carries."""
        if len(payload) > self.connection.payload_max:
            raise InvalidPayload("a request of %d bytes is over the limit of %d of %r"
                                 % (len(payload), self.connection.payload_max,
                                    self.connection.path))

    def _ready_for(self, generation: Optional[int]) -> None:
        """Make sure requests (of a transaction made on *generation*, if
        given) can be sent; the lock is held."""
        if generation is not None and generation != self.generation:
            raise ConnectionError("the connection that carried this transaction "
                                  "was lost, and the transaction with it")
        if self._state is not _OPEN:
            self._connect(self._deadline())

    def _frame(self, op: Op, payload: bytes, tx_id: int,
               rewatch: Optional[Watch] = None) -> Tuple[bytes, Slot]:
        """Number a request and note it as pending; return its message
        and the slot its reply will land in.  The lock is held."""
        rq_id = self._next_id
        self._next_id = u32(rq_id + 1)
        slot = self._pending[rq_id] = Slot(op, tx_id, self.generation, rewatch)
        return encode_frame(op, rq_id, tx_id, payload), slot

    def _await(self, slot: Slot) -> None:
        """Wait, the lock held, until *slot* has its reply or its error;
        a call that takes longer than the connection's timeout fails
        the connection."""
        if slot.reply is None and slot.error is None and not self._serve(
                slot.settled, time.monotonic() + self.connection.timeout, spin=True):
            self._fail(Timeout("no reply from %r within %gs"
                               % (self.connection.path, self.connection.timeout)))

    def violation(self, message: str) -> NoReturn:
        """XenStore answered something the protocol does not allow: end
        the connection, whose later replies cannot be trusted, and raise
        :exc:`~pyxs.exceptions.UnexpectedPacket`."""
        fault = UnexpectedPacket("%r %s" % (self.connection.path, message))
        with self._lock:
            self._fail(fault)
        raise fault

    def next_event(self, timeout: Optional[float]) -> Optional[Packet]:
        """Take the next watch event, waiting up to *timeout* seconds
        (forever when ``None``); None if none came in time.

        :raises pyxs.exceptions.EventsDropped: once after events were
            dropped for want of room.
        :raises pyxs.exceptions.ConnectionError: when the connection is
            lost and cannot be made again (with its watches) in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            failures = self._recovery_failures
            while True:
                if self.dropped:
                    dropped, self.dropped = self.dropped, 0
                    raise EventsDropped(dropped, self.max_queued_events)
                if self.events:
                    if self._drainer is not None:
                        # A consumer taking events is busy with the
                        # channel: the drainer keeps away meanwhile.
                        self._last_read = time.monotonic()
                    return self.events.popleft()
                if self._refusals_untold:
                    _raise_copy(self._refusals_untold.popleft())
                if self._recovery_failures != failures:
                    _raise_copy(self._fault)
                if self._state is _OPEN:
                    generation = self.generation

                    def news() -> bool:
                        # A refused re-watch may be what this reader reads.
                        return (bool(self.events or self.dropped) or self.generation != generation
                                or self._recovery_failures != failures)
                    if not self._serve(news, deadline):
                        return None
                    if self.generation != generation and not self.watches:
                        _raise_copy(self._fault)
                elif self.watches:
                    # The drainer is connecting again, or will be told to.
                    self._recovery_wanted = True
                    self._start_drainer()
                    self._drainer_wakeup.notify()
                    if not self._wait(deadline):
                        return None
                elif self._state is _BROKEN:
                    _raise_copy(self._fault)
                else:
                    self._connect(self._deadline())

    def add_watch(self, watch: Watch) -> None:
        """Note a watch that XenStore has accepted: the channel is drained
        from now on."""
        with self._lock:
            self.watches[watch] = None
            self._start_drainer()

    def remove_watch(self, watch: Watch, drop_events: bool = True) -> None:
        """Forget a watch that XenStore has removed.  With *drop_events*,
        its queued events go too, unless another watch with the same
        token sees them (as libxenstore's unwatch filter does)."""
        wpath, token = watch
        with self._lock:
            self.watches.pop(watch, None)
            if not self.watches and self._drainer is not None:
                self._drainer_wakeup.notify()
                if self._reader is _DRAINER:
                    self._poke()
            if not drop_events:
                return
            rivals = [p for p, t in self.watches if t == token]

            def keep(event: Packet) -> bool:
                path, event_token = split_strings(event.payload)[:2]
                return (event_token != token or not covers(wpath, path)
                        or any(covers(p, path) for p in rivals))
            kept = [event for event in self.events if keep(event)]
            self.events.clear()
            self.events.extend(kept)

    # Reading, with the lock held.

    def _serve(self, done: Callable[[], bool], deadline: Optional[float],
               spin: bool = False) -> bool:
        """Return once ``done()`` is true, reading the connection for
        everybody whenever no other caller is; False if *deadline* (a
        :func:`time.monotonic` value, or None for never) passed first.
        With *spin*, a reply is expected soon: see :data:`SPIN_SECONDS`."""
        while not done():
            reader = self._reader
            if reader is None and self._state is _OPEN:
                if not self._read(deadline, spin, _CALLER):
                    return done()
            elif reader is _DRAINER:
                if not self._drainer_yield:
                    self._drainer_yield = True
                    self._poke()
                # It lets go at once: wait for it even a little past the
                # deadline, so that what has arrived meanwhile is read (a
                # zero timeout means "what is there now", not "nothing").
                grace = time.monotonic() + _DRAINER_GRACE
                if not self._wait(None if deadline is None else max(deadline, grace)):
                    return done()
            elif not self._wait(deadline):
                return done()
        return True

    def _read(self, deadline: Optional[float], spin: bool, role: str) -> bool:
        """Be the reader once: wait for data until *deadline* and file
        what came.  False if the deadline passed with nothing read."""
        connection, lock, poll = self.connection, self._lock, self._poll
        assert poll is not None
        # None: nothing came before the deadline; b"": woken, nothing read.
        data: Optional[bytes] = None
        fault = None
        if spin and self._spin_skips:
            self._spin_skips -= 1
            spin = False
        self._reader = role
        lock.release()
        try:
            if spin:
                reply, paid = _spin(connection, poll)
                data = reply or None
                if paid is not None:
                    self._spun(paid)
            if data is None:
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if poll.poll(None if timeout is None else timeout * 1000):
                    data = connection.read()
        except ConnectionError as e:
            fault = e
        finally:
            try:
                lock.acquire()
                interrupted = None
            except BaseException as e:
                # Raised by a signal handler: raised again once the lock
                # is back (a later one, if the handler raises again).
                interrupted = _relock(lock) or e
            self._reader = None
            if self._poked or self._drainer is not None or self._sleepers:
                self._after_read(role)
        if interrupted is None:
            return self._file(data, fault)
        try:
            return self._file(data, fault)
        finally:
            raise interrupted

    def _spun(self, paid: bool) -> None:
        """Note whether a spin paid (see :data:`SPIN_BACKOFF_MAX`).
        Unlocked: a lost update only shifts when the next spin comes."""
        if paid:
            self._spin_backoff = 1
        else:
            self._spin_skips = self._spin_backoff
            self._spin_backoff = min(self._spin_backoff * 2, SPIN_BACKOFF_MAX)

    def _after_read(self, role: str) -> None:
        """Let the others know the reader let go: the closer, the drainer,
        the sleepers."""
        if self._poked:
            _drain_pipe(self._wake_r)
            self._poked = False
        if self._drainer is not None:
            if role is _CALLER or self._drainer_yield:
                # Keep the drainer away while callers are busy.
                self._last_read = time.monotonic()
            self._drainer_yield = False
            if self._drainer_parked:
                self._drainer_wakeup.notify()
        if self._sleepers:
            self._changed.notify_all()

    def _file(self, data: Optional[bytes], fault: Optional[ConnectionError]) -> bool:
        """File what the reader got, with the lock held; see :meth:`_read`."""
        if self._state is _RETIRING:
            self._disconnect()
            self._changed.notify_all()
            self._drainer_wakeup.notify()
            return True
        if fault is not None:
            self._fail(fault)
            return True
        if data is None:
            return False
        try:
            packets = self._decoder.feed(data)
        except UnexpectedPacket as e:
            self._fail(e)
            return True
        for packet in packets:
            if packet.op is _WATCH_EVENT:
                if packet.payload.count(b"\0") < 2:
                    self._fail(UnexpectedPacket("%r sent a malformed watch event %r"
                                                % (self.connection.path, packet.payload)))
                    return True
                self._queue_event(packet)
                continue
            slot = self._pending.pop(packet.rq_id, None)
            if (slot is None or packet.tx_id != slot.tx_id
                    or (packet.op is not slot.op and packet.op is not _ERROR)):
                self._mismatch(packet, slot)
                return True
            slot.reply = packet
            if slot.rewatch is not None and packet.op is _ERROR:
                self._rewatch_refused(slot.rewatch, packet.payload)
        return True

    def _mismatch(self, packet: Packet, slot: Optional[Slot]) -> None:
        """A reply that does not answer its request: end the connection."""
        if slot is None:
            problem = "which was never made"
        elif packet.op is not slot.op and packet.op is not Op.ERROR:
            problem = "which was %s" % slot.op.name
        else:
            problem = "with transaction id %d, which was made with %d" % (
                packet.tx_id, slot.tx_id)
        fault = UnexpectedPacket("%r sent %s for request %d, %s"
                                 % (self.connection.path, packet.op.name, packet.rq_id,
                                    problem))
        if slot is not None:
            slot.error = fault
        self._fail(fault)

    def _queue_event(self, packet: Packet) -> None:
        if self.max_queued_events is not None and len(self.events) >= self.max_queued_events:
            self.dropped += 1
        else:
            self.events.append(packet)
        if self.on_event is not None:
            self.on_event()

    def _rewatch_refused(self, watch: Watch, reply: bytes) -> None:
        """XenStore refused a watch on the new connection (the node's
        permissions changed, say): it is gone, and the waiters are told,
        or the next one if none waits."""
        self.watches.pop(watch, None)
        fault = ConnectionError("XenStore refused to restore the watch on %r (token %r) "
                                "after a reconnection: %s"
                                % (watch[0], watch[1], error(reply.rstrip(b"\0"))))
        log().warning("%s", fault)
        self._fault = fault
        self._refusals_untold.append(fault)
        self._recovery_failures += 1
        self._changed.notify_all()

    # The drainer.

    def _start_drainer(self) -> None:
        if self._drainer is None:
            drainer = threading.Thread(target=self._drain, name="pyxs drainer of %r"
                                       % self.connection.path, daemon=True)
            self._drainer = drainer
            drainer.start()

    def _drain(self) -> None:
        """The drainer thread: read while nobody else does, and connect
        again after a fault, as long as the channel has watches."""
        me = threading.current_thread()
        with self._lock:
            try:
                while self.watches and self._drainer is me:
                    if self._state is _OPEN:
                        self._drain_once()
                    elif self._state is _RETIRING or not self._recovery_wanted:
                        self._drainer_wakeup.wait()
                    else:
                        self._recover()
            finally:
                if self._drainer is me:
                    self._drainer = None

    def _drain_once(self) -> None:
        rest = self._last_read + DRAIN_DELAY - time.monotonic()
        if rest > 0:
            # A caller read lately: it is likely to again.
            self._drainer_wakeup.wait(rest)
        elif self._reader is not None:
            # A caller waits on the connection (for events, often, and
            # maybe for long): park until it lets go.  Woken then, the
            # drainer stays away for DRAIN_DELAY first, not parking again
            # at once: a consumer taking events one by one would
            # otherwise wake it at every event.
            self._drainer_parked = True
            try:
                self._drainer_wakeup.wait()
            finally:
                self._drainer_parked = False
        else:
            self._read(None, False, _DRAINER)

    def _recover(self) -> None:
        """Connect again and register the watches again, within the
        connection's timeout; on failure, tell the waiters."""
        self._recovery_wanted = False
        deadline = self._deadline()
        pause = 0.01
        last: Optional[ConnectionError] = None
        while self.watches and self._state is not _OPEN:
            try:
                self._connect(deadline)
                return
            except ConnectionError as e:
                last = e
            if time.monotonic() + pause >= deadline:
                break
            self._drainer_wakeup.wait(pause)
            pause = min(pause * 2, 0.5)
        if last is not None and self._state is not _OPEN and self.watches:
            fault = ConnectionError("the connection to %r was lost, and no new one could be "
                                    "made within %gs: %s"
                                    % (self.connection.path, self.connection.timeout, last))
            fault.__cause__ = last
            log().warning("%s", fault)
            self._fault = fault
            self._recovery_failures += 1
            self._changed.notify_all()


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


def _spin(connection: FileDescriptorConnection,
          poll: "select.poll") -> Tuple[bytes, Optional[bool]]:
    """Check for a reply for up to :data:`SPIN_SECONDS`, keeping the CPU.
    Return what was read (``b""`` if nothing came) and whether spinning
    paid: True when the reply came while this thread kept its CPU, False
    when none came or it came because the thread was preempted meanwhile
    (by XenStore on the same CPU, say), which sleeping would have done as
    well; None when it was there at once, which tells nothing.  Readiness
    is asked of *poll* (the connection and the wake pipe): a read that
    finds nothing costs an exception, three times as much."""
    if poll.poll(0):
        return connection.read(), None
    start, cpu_start = time.monotonic(), time.thread_time()
    end = start + SPIN_SECONDS
    while True:
        if poll.poll(0):
            data = connection.read()
            away = (time.monotonic() - start) - (time.thread_time() - cpu_start)
            return data, bool(data) and away < _PREEMPTED
        if time.monotonic() > end:
            return b"", False


def _reply(slot: Slot) -> Packet:
    """The reply in *slot*, or what went wrong, raised."""
    if slot.error is not None:
        _raise_copy(slot.error)
    return slot.reply  # type: ignore[return-value]


def _payload(reply: Packet) -> bytes:
    """A reply's payload; an error reply raised as :class:`~pyxs.client.Client`
    reads it (:func:`pyxs._internal.client_errno`)."""
    if reply.op is _ERROR:
        raise error(reply.payload.rstrip(b"\0"))
    return reply.payload


def _drain_pipe(fd: int) -> None:
    try:
        os.read(fd, 64)
    except BlockingIOError:
        pass


def _raise_copy(fault: ConnectionError) -> NoReturn:
    """Raise a fresh copy of a fault that many callers share, so that each
    gets a traceback of its own; the cause (an OSError, say) is kept."""
    raise type(fault)(*fault.args) from fault.__cause__


def covers(wpath: bytes, path: bytes) -> bool:
    """Whether a watch on *wpath* sees a change of *path*."""
    return path == wpath or path.startswith(wpath.rstrip(b"/") + b"/")


# What must forget the parent's state in a child after fork(): every
# channel, and the objects given to forget_parent_after_fork().
_LIVE_CHANNELS: "weakref.WeakSet[Channel]" = weakref.WeakSet()
_FORK_AWARE: "weakref.WeakSet[object]" = weakref.WeakSet()


def forget_parent_after_fork(obj: object) -> None:
    """Have ``obj._forget_parent()`` called in the child after a fork."""
    _FORK_AWARE.add(obj)


def _after_fork_in_child() -> None:
    for channel in list(_LIVE_CHANNELS):
        channel._forget_parent()
    for obj in list(_FORK_AWARE):
        obj._forget_parent()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
