"""What a call into the store produces: the :class:`Outcome` that
request handlers answer through, and the :class:`RequestFailed` they
raise to fail a request (xenstored_core.c: the sending functions)."""

import errno
from typing import Iterable, Iterator, List, Optional, Tuple

from .._internal import PAYLOAD_MAX, Op, Packet, join_strings, xenstored_error_name
from ._model import Connection


class RequestFailed(Exception):
    """The request being handled fails with the error number *code*, which
    goes back as its error reply: a xenstored request handler's nonzero
    return.  Handlers that fail with the daemon's errno may pass 0: the
    request then goes unanswered, and the store fails the connection, as
    the daemon would have crashed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def duplicate_event(packet: Packet, unsent: Iterable[Packet]) -> bool:
    """Whether *packet* is a watch event that an identical one among the
    *unsent* packets of the same connection makes redundant; events on
    special paths (``@...``) never are.

    The store applies this to the packets of one call, the server to what
    it still has to write, which together give the daemon's rule.
    """
    # xenstored_core.c: send_event()
    if packet.op != Op.WATCH_EVENT or packet.payload.startswith(b"@"):
        return False
    return any(other.op == Op.WATCH_EVENT and other.payload == packet.payload
               for other in unsent)


class Outcome:
    """What one call into the store produced: the packets to send, in
    order, each with the connection it is for, and the connections the
    call ended.  Request handlers add to it as they go.

    Iterating over an outcome gives its ``(connection, packet)`` pairs.

    :ivar packets: the ``(connection, packet)`` pairs.
    :ivar failed: connections the store failed during the call (see
        :attr:`Connection.broken <._model.Connection.broken>`): stop serving them.
    :ivar closed: connections the store closed during the call (their
        domain was released): stop serving them.
    :ivar reset: connections the daemon reset: whatever was not yet
        written to them goes, before :attr:`packets` are queued.
    """

    __slots__ = ("packets", "failed", "closed", "reset", "_request", "replied")

    def __init__(self, conn: Optional[Connection] = None, rq_id: int = 0,
                 tx_id: int = 0) -> None:
        self.packets: List[Tuple[Connection, Packet]] = []
        self.failed: List[Connection] = []
        self.closed: List[Connection] = []
        self.reset: List[Connection] = []
        self._request = (conn, rq_id, tx_id)
        #: Whether the request has had its answer.
        self.replied = False

    def __iter__(self) -> Iterator[Tuple[Connection, Packet]]:
        return iter(self.packets)

    # xenstored_core.c: send_reply()
    def reply(self, op: Op, payload: bytes) -> None:
        """Answer the request; later answers are ignored, as the daemon
        keeps only the first."""
        if len(payload) > PAYLOAD_MAX:
            self.error(errno.E2BIG)
            return
        conn, rq_id, tx_id = self._request
        if self.replied:
            return
        assert conn is not None  # Only requests are answered.
        self.packets.append((conn, Packet(op, payload, rq_id=rq_id, tx_id=tx_id)))
        self.replied = True

    # xenstored_core.c: send_ack()
    def ack(self, op: Op) -> None:
        self.reply(op, b"OK\0")

    # xenstored_core.c: send_error()
    def error(self, code: int) -> None:
        self.reply(Op.ERROR, join_strings(xenstored_error_name(code)))

    # xenstored_core.c: send_event()
    def event(self, conn: Connection, path: bytes, token: bytes) -> None:
        payload = join_strings(path, token)
        if len(payload) > PAYLOAD_MAX:
            return
        packet = Packet(Op.WATCH_EVENT, payload)
        if not duplicate_event(packet, (p for c, p in self.packets if c is conn)):
            self.packets.append((conn, packet))
