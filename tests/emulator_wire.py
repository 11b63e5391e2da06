"""A raw XenStore wire client for the emulator's tests.

It speaks to any XenStore socket (the emulator's or a real daemon's)
without going through pyxs's Client: frames are built with the codec's
HEADER and read back with PacketDecoder, and watch events are kept apart
from replies, in arrival order.
"""

import socket
import time
from typing import List, Optional, Tuple

from pyxs._internal import HEADER, Op, PacketDecoder

#: (type, payload) of a reply.
Reply = Tuple[int, bytes]


class Closed(Exception):
    """The other side closed the connection."""


class RawConnection:
    """One raw connection: send a request, get the events that came
    before its reply, and the reply."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                break
            except (BlockingIOError, InterruptedError):
                # xenstored listens with a backlog of 1 and accepts one
                # connection per turn of its loop.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        self._decoder = PacketDecoder()
        self._pending = []  # type: list
        self._rq_id = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, op: int, payload: bytes, tx_id: int = 0) -> int:
        self._rq_id += 1
        self.sock.sendall(HEADER.pack(op, self._rq_id, tx_id, len(payload)) + payload)
        return self._rq_id

    def _next(self):
        while not self._pending:
            data = self.sock.recv(65536)
            if not data:
                raise Closed()
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def reply(self, rq_id: Optional[int] = None) -> Tuple[List[bytes], Reply]:
        """Read until a reply: return the watch events read before it
        (their payloads) and the reply."""
        events = []
        while True:
            packet = self._next()
            if packet.op == Op.WATCH_EVENT:
                events.append(packet.payload)
                continue
            if rq_id is not None:
                assert packet.rq_id == rq_id, (packet, rq_id)
            return events, (int(packet.op), packet.payload)

    def request(self, op: int, payload: bytes, tx_id: int = 0) -> Tuple[List[bytes], Reply]:
        return self.reply(self.send(op, payload, tx_id))

    def sync(self) -> List[bytes]:
        """The events queued for this connection so far: a request with no
        effect on the daemon's state, and everything that came before its
        answer."""
        events, reply = self.request(Op.GET_DOMAIN_PATH, b"0\0")
        assert reply == (Op.GET_DOMAIN_PATH, b"/local/domain/0\0"), reply
        return events

    def call(self, op: int, payload: bytes, tx_id: int = 0) -> Reply:
        """A request whose events do not matter: just the reply."""
        return self.request(op, payload, tx_id)[1]
