"""The XenStore wire format, with no I/O.

A message is a 16-byte header of four native-endian unsigned 32-bit
integers (operation, request id, transaction id, payload length)
followed by at most 4096 bytes of payload (``struct xsd_sockmsg`` in
Xen's ``xs_wire.h``).  :class:`Packet` is one such message, ``bytes(packet)``
its encoding, and :class:`PacketDecoder` turns a stream of received
bytes back into packets, whatever pieces the stream arrives in.

Under them sits the frame layer that everything speaking the protocol
shares, the emulator and the test fakes included: :func:`encode_frame`
and :class:`FrameDecoder`, which take any operation number, known or not.
"""

from __future__ import annotations

import enum
import errno
import struct
from typing import Dict, Generic, List, NamedTuple, Optional, Tuple, TypeVar, Union

from .exceptions import InvalidOperation, InvalidPayload, UnexpectedPacket

__all__ = ["Op", "Packet", "Event", "PacketDecoder", "FrameDecoder", "Frame", "OversizedFrame",
           "HEADER", "PAYLOAD_MAX", "READ_SIZE", "WIRE_ERRORS", "client_errno",
           "libxenstore_errno", "xenstored_error_name", "encode_frame", "join_strings",
           "split_strings"]

#: The message header: operation, request id, transaction id, length.
HEADER = struct.Struct("=IIII")

#: Largest payload allowed in either direction.
PAYLOAD_MAX = 4096

#: How many bytes to ask for when reading a connection: more than any
#: message (16 + 4096 bytes), so one read usually takes every message
#: that is waiting.
READ_SIZE = 65536

#: One message as the frame layer sees it: operation number, request id,
#: transaction id, payload.
Frame = Tuple[int, int, int, bytes]

_Message = TypeVar("_Message")


class Op(enum.IntEnum):
    """XenStore operations and their numbers on the wire."""

    DEBUG = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    #: Withdrawn from Xen; today's daemons answer it with ``ENOSYS``.
    RESTRICT = 20
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


_OPS = {op.value: op for op in Op}

# The decoder's fast path, looked up once.
_HEADER_SIZE, _unpack_header, _new_tuple = HEADER.size, HEADER.unpack_from, tuple.__new__

#: The error names XenStore's wire protocol defines (``xs_wire.h``), with
#: their numbers.  C xenstored sends any other error as ``EINVAL``, and
#: libxenstore reads any other name as ``EINVAL``.
WIRE_ERRORS: Dict[bytes, int] = {
    name.encode("ascii"): getattr(errno, name)
    for name in ("EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM",
                 "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY",
                 "EAGAIN", "EISCONN", "E2BIG", "EPERM")
}

# The error names of ERROR replies mean different things to the two front
# ends: each applies its own policy, and both are here to be compared, as
# is the daemon's, which picks the name it sends.

_ERRNO_OF_NAME = {name: number for number, name in errno.errorcode.items()}
# oxenstored's non-standard name for what C xenstored calls ENOSPC.
_ERRNO_OF_NAME["EQUOTA"] = errno.ENOSPC


def client_errno(name: str) -> int:
    """The error number :class:`pyxs.Client` gives an error name: any name
    the operating system knows (:data:`errno.errorcode`), oxenstored's
    ``EQUOTA`` as ``ENOSPC``, and ``EINVAL`` for anything else.

    >>> client_errno("EQUOTA") == errno.ENOSPC
    True
    """
    return _ERRNO_OF_NAME.get(name, errno.EINVAL)


def libxenstore_errno(name: bytes) -> int:
    """The error number libxenstore gives an error name (``get_error()``
    in ``tools/libs/store/xs.c``), which the :mod:`xen.lowlevel.xs`
    stand-in copies: the names of :data:`WIRE_ERRORS` only, ``EINVAL``
    for anything else, ``EQUOTA`` included.

    >>> libxenstore_errno(b"EQUOTA") == errno.EINVAL
    True
    """
    return WIRE_ERRORS.get(name, errno.EINVAL)


_WIRE_NAMES = {number: name for name, number in WIRE_ERRORS.items()}


def xenstored_error_name(code: int) -> bytes:
    """The error name C xenstored sends for the error number *code*
    (``send_error()`` in ``xenstored_core.c``), as the emulator in
    :mod:`pyxs.testing` does: the names of :data:`WIRE_ERRORS` only,
    ``EINVAL`` for any other number.

    >>> xenstored_error_name(errno.ENOENT), xenstored_error_name(errno.EDQUOT)
    (b'ENOENT', b'EINVAL')
    """
    return _WIRE_NAMES.get(code, b"EINVAL")


def encode_frame(op: int, rq_id: int, tx_id: int, payload: bytes) -> bytes:
    """One message as it goes on the wire: the header, then *payload*.
    Nothing is checked (a :class:`Packet` checks its operation and size
    as it is made), so that a test or the emulator can send any
    operation number.

    >>> encode_frame(Op.READ, 7, 0, b"/vm\\x00") == bytes(Packet(Op.READ, b"/vm\\x00", 7))
    True
    """
    return HEADER.pack(op, rq_id, tx_id, len(payload)) + payload


def join_strings(*parts: bytes) -> bytes:
    """A payload of NUL-terminated strings, as most requests carry.

    >>> join_strings(b"/vm", b"token")
    b'/vm\\x00token\\x00'
    """
    return b"\0".join(parts) + b"\0"


def split_strings(payload: bytes) -> List[bytes]:
    """The NUL-terminated strings of a payload; bytes after the last NUL
    are ignored.

    >>> split_strings(b"a\\x00b\\x00")
    [b'a', b'b']
    """
    return payload.split(b"\0")[:-1] if payload else []


class Packet(NamedTuple("_Packet", [("op", Op), ("rq_id", int), ("tx_id", int),
                                    ("size", int), ("payload", bytes)])):
    """One XenStore message.

    >>> p = Packet(Op.READ, b"/local/domain/0/name\\x00", rq_id=7)
    >>> p.size, p.tx_id
    (21, 0)
    >>> Packet.decode(bytes(p)) == p
    True

    :param op: the operation, an :class:`Op` or its number.
    :param payload: the payload: bytes, a bytearray or memoryview, or a
        str (encoded as UTF-8).
    :param rq_id: the request id XenStore echoes in its reply; 0 if None.
    :param tx_id: the transaction id; 0, the default, means none.
    :raises pyxs.exceptions.InvalidOperation: for an unknown operation.
    :raises pyxs.exceptions.InvalidPayload: for a payload over
        :data:`PAYLOAD_MAX` bytes, or of any other type.
    """

    __slots__ = ()

    def __new__(cls, op: Union[Op, int], payload: Union[bytes, bytearray, memoryview, str],
                rq_id: Optional[int] = None, tx_id: Optional[int] = None) -> "Packet":
        try:
            op = _OPS[op]
        except (KeyError, TypeError):
            raise InvalidOperation(op) from None
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        elif isinstance(payload, (bytearray, memoryview)):
            payload = bytes(payload)
        elif not isinstance(payload, bytes):
            # bytes() would also take an int (that many NULs) or any
            # iterable of ints: never what a caller means by a payload.
            raise InvalidPayload("a payload must be bytes or str, not %s"
                                 % type(payload).__name__)
        if len(payload) > PAYLOAD_MAX:
            raise InvalidPayload("a payload of %d bytes is over the limit of %d"
                                 % (len(payload), PAYLOAD_MAX))
        return tuple.__new__(cls, (op, rq_id or 0, tx_id or 0, len(payload), payload))

    def __bytes__(self) -> bytes:
        return encode_frame(self.op, self.rq_id, self.tx_id, self.payload)

    @classmethod
    def decode(cls, data: bytes) -> "Packet":
        """Decode exactly one whole message.

        :raises pyxs.exceptions.UnexpectedPacket: when *data* is not one
            well-formed message.
        """
        decoder = PacketDecoder()
        packets = decoder.feed(data)
        if len(packets) != 1 or decoder.pending:
            raise UnexpectedPacket("expected exactly one message in %d bytes" % len(data))
        return packets[0]


class Event(NamedTuple):
    """A watch event: the path that changed and the token of the watch
    that saw it."""

    path: str
    token: str


def _oversized_message(size: int) -> str:
    return "a message header announces %d bytes of payload, over the limit of %d" % (
        size, PAYLOAD_MAX)


class OversizedFrame(UnexpectedPacket):
    """What :class:`FrameDecoder` raises for a message header announcing
    more than :data:`PAYLOAD_MAX` bytes of payload: nothing after it can
    be trusted.

    :ivar size: the payload size the header announced.
    :ivar before: the whole messages the same ``feed()`` completed before
        that header, for a server to answer them first, as xenstored
        does (it reads and handles one message at a time).
    """

    def __init__(self, size: int, before: List[Frame]) -> None:
        super().__init__(_oversized_message(size))
        self.size = size
        self.before = before


class _FrameSplitter(Generic[_Message]):
    """Split a byte stream into messages; subclasses say what a message
    becomes (:meth:`_message`)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def _message(self, op: int, rq_id: int, tx_id: int, payload: bytes) -> _Message:
        raise NotImplementedError

    def _oversized(self, size: int, before: List[_Message]) -> UnexpectedPacket:
        """The error for a header announcing *size* bytes, after the
        messages *before* it."""
        return UnexpectedPacket(_oversized_message(size))

    def feed(self, data: bytes) -> List[_Message]:
        """The messages that *data* completes, in order; a partial one is
        kept for the next call.

        :raises pyxs.exceptions.UnexpectedPacket: for a header announcing
            more than :data:`PAYLOAD_MAX` bytes.
        """
        buffer = self._buffer
        if buffer or type(data) is not bytes:
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        # Sliced from bytes, each payload is copied once.
        messages: List[_Message] = []
        message = self._message
        start, end = 0, len(data)
        while end - start >= _HEADER_SIZE:
            op, rq_id, tx_id, size = _unpack_header(data, start)
            if size > PAYLOAD_MAX:
                buffer += data[start:]
                raise self._oversized(size, messages)
            stop = start + _HEADER_SIZE + size
            if stop > end:
                break
            messages.append(message(op, rq_id, tx_id, data[start + _HEADER_SIZE:stop]))
            start = stop
        buffer += data[start:]
        return messages


class FrameDecoder(_FrameSplitter[Frame]):
    """Split a byte stream into raw frames, ``(op, rq_id, tx_id,
    payload)`` with *op* a plain number, for whoever must see operations
    that :class:`Op` does not know (a server answers them with an
    error).  Like :class:`PacketDecoder`, it refuses a header announcing
    more than :data:`PAYLOAD_MAX` bytes (:exc:`OversizedFrame`).

    >>> FrameDecoder().feed(encode_frame(99, 1, 0, b"x"))
    [(99, 1, 0, b'x')]
    """

    def _message(self, op: int, rq_id: int, tx_id: int, payload: bytes) -> Frame:
        return op, rq_id, tx_id, payload

    def _oversized(self, size: int, before: List[Frame]) -> UnexpectedPacket:
        return OversizedFrame(size, before)


class PacketDecoder(_FrameSplitter[Packet]):
    """Split a byte stream into packets.

    Feed it bytes as they arrive; it returns the messages completed so far
    and keeps any partial one for the next call.  A header announcing more
    than :data:`PAYLOAD_MAX` bytes or an unknown operation raises
    :exc:`~pyxs.exceptions.UnexpectedPacket`: the stream cannot be trusted
    after that.

    .. versionadded:: 0.5.0
    """

    # Named here as well, for the API documentation: the base is private.
    pending = _FrameSplitter.pending

    def feed(self, data: bytes) -> List[Packet]:
        if not self._buffer and type(data) is bytes and len(data) >= _HEADER_SIZE:
            # The usual case, one whole reply and nothing left over, is
            # decoded without copying through the buffer (from bytes only:
            # a payload sliced from a bytearray or memoryview would be one
            # too, or a view of the caller's buffer).
            op, rq_id, tx_id, size = _unpack_header(data)
            if len(data) == _HEADER_SIZE + size and size <= PAYLOAD_MAX:
                known = _OPS.get(op)
                if known is not None:
                    return [_new_tuple(Packet, (known, rq_id, tx_id, size,
                                                data[_HEADER_SIZE:]))]
        return super().feed(data)

    def _message(self, op: int, rq_id: int, tx_id: int, payload: bytes) -> Packet:
        try:
            known = _OPS[op]
        except KeyError:
            raise UnexpectedPacket("a message of unknown type %d" % op) from None
        return _new_tuple(Packet, (known, rq_id, tx_id, len(payload), payload))
