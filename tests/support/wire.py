"""The one raw XenStore wire client of pyxs's tests.

It speaks to any XenStore socket (the emulator's or a real daemon's), or
to the emulator's pseudo-terminal, without going through pyxs's Client,
so that a test can check pyxs against what a daemon really says, clean up
after pyxs, or send what pyxs never would (any operation number, any
request id).  Frames are built by the codec's ``encode_frame`` and read
back as they come, whatever their size; watch events are kept apart from
replies, in arrival order.
"""

import os
import select
import socket
import time
from typing import Callable, List, Optional, Tuple

from pyxs._internal import HEADER, Frame, Op, encode_frame

#: (type, payload) of a reply.
Reply = Tuple[int, bytes]


class Closed(ConnectionResetError):
    """The other side closed the connection."""


class FrameReader:
    """Whole messages out of a byte stream, as they come; *read* gives the
    next bytes of the stream, ``b""`` at its end.

    Unlike the codec's ``FrameDecoder``, it takes a message of any size:
    the tests must see what daemons really send, oxenstored's DIRECTORY
    replies over the protocol's 4096 bytes included.
    """

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._received = bytearray()

    def _take(self, size: int) -> bytes:
        while len(self._received) < size:
            data = self._read()
            if not data:
                raise Closed("the other side closed the connection")
            self._received += data
        taken = bytes(self._received[:size])
        del self._received[:size]
        return taken

    def read_frame(self) -> Frame:
        """The next message: ``(type, rq_id, tx_id, payload)``.

        :raises Closed: when the other side closes the connection first.
        """
        op, rq_id, tx_id, size = HEADER.unpack(self._take(HEADER.size))
        return op, rq_id, tx_id, self._take(size)


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
        self._frames = FrameReader(self._read)
        self._rq_id = 0

    def _read(self) -> bytes:
        return self.sock.recv(65536)

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, op: int, payload: bytes, tx_id: int = 0) -> int:
        """Send a request with the next request id, and return that id."""
        self._rq_id += 1
        self._write(encode_frame(op, self._rq_id, tx_id, payload))
        return self._rq_id

    def read_frame(self) -> Frame:
        """The next message, whatever it is."""
        return self._frames.read_frame()

    def reply(self, rq_id: Optional[int] = None) -> Tuple[List[bytes], Reply]:
        """Read until a reply: return the watch events read before it
        (their payloads) and the reply."""
        events = []
        while True:
            op, reply_id, _tx_id, payload = self.read_frame()
            if op == Op.WATCH_EVENT:
                events.append(payload)
                continue
            if rq_id is not None:
                assert reply_id == rq_id, (op, reply_id, payload, rq_id)
            return events, (op, payload)

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


class PtyConnection(RawConnection):
    """A :class:`RawConnection` over the emulator's pseudo-terminal (or
    another character device): a reply must come within :attr:`timeout`
    seconds, or :class:`TimeoutError` is raised."""

    timeout = 5.0

    def __init__(self, path: str) -> None:  # no socket here
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self._frames = FrameReader(self._read)
        self._rq_id = 0

    def close(self) -> None:
        os.close(self.fd)

    def _read(self) -> bytes:
        if not select.select([self.fd], [], [], self.timeout)[0]:
            raise TimeoutError("no answer on the pseudo-terminal")
        return os.read(self.fd, 65536)

    def _write(self, data: bytes) -> None:
        os.write(self.fd, data)


def raw_request(target, op: int, payload: bytes, tx_id: int = 0,
                timeout: float = 5.0) -> Reply:
    """Send one request on a new connection and return the reply's
    ``(type, payload)``.  *target* is a socket path or anything with a
    ``socket_path`` (a daemon, the emulator).

    :raises OSError: on connection problems (:class:`Closed` when the
        other side hangs up, :class:`socket.timeout` when it is silent).
    """
    with RawConnection(str(getattr(target, "socket_path", target)), timeout) as conn:
        return conn.call(op, payload, tx_id)
