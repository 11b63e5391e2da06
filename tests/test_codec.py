"""The wire codec (pyxs._internal): operation numbers, Packet, its
encoding, PacketDecoder and Event.

The expected layout is written here independently of the library: a
16-byte header of four native-endian uint32 (type, req_id, tx_id, len)
followed by at most 4096 bytes of payload (xen/include/public/io/xs_wire.h).
"""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from pyxs import exceptions
from pyxs._internal import Event, FrameDecoder, Op, Packet, PacketDecoder
from pyxs.exceptions import InvalidOperation, InvalidPayload, PyXSError, UnexpectedPacket

#: Moderate example counts, so that the whole file runs in a few seconds.
FAST = settings(max_examples=60, deadline=None)

WIRE_HEADER = struct.Struct("=IIII")
PAYLOAD_LIMIT = 4096
UINT32 = st.integers(min_value=0, max_value=2 ** 32 - 1)

#: The operations of xs_wire.h, by name and number.
EXPECTED_OPS = {
    "DEBUG": 0,
    "DIRECTORY": 1,
    "READ": 2,
    "GET_PERMS": 3,
    "WATCH": 4,
    "UNWATCH": 5,
    "TRANSACTION_START": 6,
    "TRANSACTION_END": 7,
    "INTRODUCE": 8,
    "RELEASE": 9,
    "GET_DOMAIN_PATH": 10,
    "WRITE": 11,
    "MKDIR": 12,
    "RM": 13,
    "SET_PERMS": 14,
    "WATCH_EVENT": 15,
    "ERROR": 16,
    "IS_DOMAIN_INTRODUCED": 17,
    "RESUME": 18,
    "SET_TARGET": 19,
    "RESTRICT": 20,
    "RESET_WATCHES": 21,
    "DIRECTORY_PART": 22,
}

KNOWN_NUMBERS = frozenset(int(op) for op in Op)

ops = st.sampled_from(list(Op))
payloads = st.binary(max_size=PAYLOAD_LIMIT)
# Mostly short payloads, some near the limit, so that streams stay small.
small_payloads = st.one_of(st.binary(max_size=64),
                           st.binary(min_size=PAYLOAD_LIMIT - 8, max_size=PAYLOAD_LIMIT))


def make_packet(op, payload, rq_id, tx_id):
    return Packet(op, payload, rq_id, tx_id)


packets = st.builds(make_packet, ops, payloads, UINT32, UINT32)
unknown_ops = UINT32.filter(lambda n: n not in KNOWN_NUMBERS)


def wire(op, rq_id, tx_id, payload):
    """The encoding of one message, built without the library."""
    return WIRE_HEADER.pack(int(op), rq_id, tx_id, len(payload)) + payload


# Op.

@pytest.mark.parametrize("name,number", sorted(EXPECTED_OPS.items(), key=lambda i: i[1]))
def test_op_names_and_numbers(name, number):
    op = getattr(Op, name)
    assert op == number
    assert int(op) == number
    assert Op(number) is op
    assert op.name == name


def test_op_has_exactly_the_expected_names():
    # __members__ lists aliases too, which iterating over Op skips: two
    # names given one number would show here as a missing name.
    assert {name: int(op) for name, op in Op.__members__.items()} == EXPECTED_OPS


# Packet.

def test_packet_fields():
    assert Packet._fields == ("op", "rq_id", "tx_id", "size", "payload")
    p = Packet(Op.READ, b"/local/domain/0/name\x00", rq_id=7, tx_id=3)
    assert p.op is Op.READ
    assert (p.rq_id, p.tx_id, p.size) == (7, 3, 21)
    assert p.payload == b"/local/domain/0/name\x00"
    assert tuple(p) == (Op.READ, 7, 3, 21, b"/local/domain/0/name\x00")
    assert isinstance(p, tuple)


def test_packet_defaults_are_zero():
    p = Packet(Op.TRANSACTION_START, b"\x00")
    assert (p.rq_id, p.tx_id) == (0, 0)
    p = Packet(Op.READ, b"/a\x00", rq_id=None, tx_id=None)
    assert (p.rq_id, p.tx_id) == (0, 0)


def test_packet_positional_order_is_op_payload_rq_tx():
    p = Packet(Op.WRITE, b"/a\x00v", 5, 9)
    assert (p.rq_id, p.tx_id, p.payload) == (5, 9, b"/a\x00v")


@FAST
@given(st.sampled_from(sorted(EXPECTED_OPS.values())))
def test_packet_accepts_op_numbers(number):
    p = Packet(number, b"")
    assert p.op == number
    assert p.op is Op(number)


def test_packet_empty_payload():
    p = Packet(Op.RESET_WATCHES, b"")
    assert p.size == 0 and p.payload == b""


@FAST
@given(ops, payloads)
def test_packet_size_is_payload_length(op, payload):
    p = Packet(op, payload)
    assert p.size == len(payload)
    assert p.payload == payload


def test_packet_payload_limit_is_4096_bytes():
    assert Packet(Op.WRITE, b"x" * PAYLOAD_LIMIT).size == PAYLOAD_LIMIT
    with pytest.raises(InvalidPayload):
        Packet(Op.WRITE, b"x" * (PAYLOAD_LIMIT + 1))


@FAST
@given(ops, st.integers(min_value=PAYLOAD_LIMIT + 1, max_value=3 * PAYLOAD_LIMIT))
def test_packet_refuses_oversized_payload(op, size):
    with pytest.raises(InvalidPayload) as info:
        Packet(op, b"\x01" * size)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PyXSError)


@FAST
@given(unknown_ops)
def test_packet_refuses_unknown_operation(number):
    with pytest.raises(InvalidOperation) as info:
        Packet(number, b"")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PyXSError)


@pytest.mark.parametrize("bad", [-1, 23, 128, 65535, "READ", None, [2], {}],
                         ids=["-1", "23", "128", "65535", "name", "None", "list", "dict"])
def test_packet_refuses_other_operations(bad):
    # Unhashable ones ([2], {}) included: they fail the lookup differently.
    with pytest.raises(InvalidOperation):
        Packet(bad, b"")


@pytest.mark.parametrize("payload", [bytearray(b"/a\x00\xff"), memoryview(b"/a\x00\xff")],
                         ids=["bytearray", "memoryview"])
def test_packet_takes_bytes_like_payloads_as_bytes(payload):
    p = Packet(Op.WRITE, payload)
    assert type(p.payload) is bytes
    assert p.payload == b"/a\x00\xff" and p.size == 4


def test_packet_encodes_a_str_payload_as_utf8():
    p = Packet(Op.WRITE, "/a\x00\u00e9")
    assert p.payload == b"/a\x00\xc3\xa9" and p.size == 5


@pytest.mark.parametrize("payload", [5, 0, [1, 2], (0,), None, 2.5, {b"a": 1}],
                         ids=["int", "zero", "list", "tuple", "None", "float", "dict"])
def test_packet_refuses_payloads_that_are_not_bytes_or_str(payload):
    # bytes(5) would be five NULs, bytes([1, 2]) two bytes: neither is a
    # payload anyone means.
    with pytest.raises(InvalidPayload, match=type(payload).__name__):
        Packet(Op.READ, payload)


def test_packet_limit_counts_encoded_bytes():
    assert Packet(Op.WRITE, "\u00e9" * (PAYLOAD_LIMIT // 2)).size == PAYLOAD_LIMIT
    with pytest.raises(InvalidPayload, match="4098 bytes"):
        Packet(Op.WRITE, "\u00e9" * (PAYLOAD_LIMIT // 2 + 1))


def test_codec_exceptions_are_value_errors_and_pyxs_errors():
    for cls in (InvalidOperation, InvalidPayload):
        assert issubclass(cls, ValueError)
        assert issubclass(cls, PyXSError)
        assert getattr(exceptions, cls.__name__) is cls


# Encoding and decoding.

@FAST
@given(ops, payloads, UINT32, UINT32)
def test_encoding_is_the_wire_layout(op, payload, rq_id, tx_id):
    assert bytes(Packet(op, payload, rq_id, tx_id)) == wire(op, rq_id, tx_id, payload)


@FAST
@given(packets)
def test_encode_decode_round_trip(packet):
    data = bytes(packet)
    assert len(data) == 16 + packet.size
    decoded = Packet.decode(data)
    assert decoded == packet
    assert decoded.op is packet.op


@FAST
@given(packets, st.binary(min_size=1, max_size=WIRE_HEADER.size - 1))
def test_decode_refuses_trailing_bytes(packet, extra):
    # Fewer than a header: more would be judged as a message of its own.
    data = bytes(packet) + extra
    with pytest.raises(UnexpectedPacket) as info:
        Packet.decode(data)
    assert str(info.value) == "expected exactly one message in %d bytes" % len(data)


@FAST
@given(packets, st.data())
def test_decode_refuses_truncated_message(packet, data):
    encoded = bytes(packet)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(UnexpectedPacket):
        Packet.decode(encoded[:cut])


# PacketDecoder.

@st.composite
def stream_and_chunks(draw):
    """A list of packets, their concatenated encoding, and the encoding cut
    at arbitrary points."""
    items = draw(st.lists(st.builds(make_packet, ops, small_payloads, UINT32, UINT32),
                          max_size=6))
    stream = b"".join(bytes(p) for p in items)
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(stream)),
                                max_size=12)))
    bounds = [0] + cuts + [len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    return items, stream, chunks


@FAST
@given(stream_and_chunks())
def test_decoder_any_chunking_yields_the_same_packets(case):
    items, stream, chunks = case
    decoder = PacketDecoder()
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    assert out == items
    assert decoder.pending == 0
    assert all(a.op is b.op for a, b in zip(out, items))


@FAST
@given(stream_and_chunks())
def test_decoder_byte_by_byte(case):
    items, stream, _ = case
    decoder = PacketDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i:i + 1]))
    assert out == items
    assert decoder.pending == 0


@FAST
@given(packets, st.data())
def test_decoder_keeps_a_partial_message(packet, data):
    encoded = bytes(packet)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    decoder = PacketDecoder()
    assert decoder.feed(encoded[:cut]) == []
    assert decoder.pending == cut
    assert decoder.feed(encoded[cut:]) == [packet]
    assert decoder.pending == 0


@FAST
@given(ops, UINT32, UINT32,
       st.integers(min_value=PAYLOAD_LIMIT + 1, max_value=2 ** 32 - 1))
def test_decoder_refuses_oversized_length(op, rq_id, tx_id, size):
    header = WIRE_HEADER.pack(int(op), rq_id, tx_id, size)
    with pytest.raises(UnexpectedPacket) as info:
        PacketDecoder().feed(header)
    assert str(info.value) == ("a message header announces %d bytes of payload, over the "
                               "limit of 4096" % size)


def test_decoder_does_not_read_a_continuation_as_a_message():
    # The rest of a message whose header came alone, shaped so that it
    # would pass for a whole message of its own.
    inner = wire(Op.READ, 1, 2, b"abcd")
    outer = wire(Op.READ, 9, 0, inner)
    decoder = PacketDecoder()
    assert decoder.feed(outer[:16]) == []
    [p] = decoder.feed(outer[16:])
    assert (p.op, p.rq_id, p.tx_id, p.payload) == (Op.READ, 9, 0, inner)


def test_decoder_accepts_exactly_4096_bytes():
    data = wire(Op.READ, 1, 0, b"v" * PAYLOAD_LIMIT)
    [p] = PacketDecoder().feed(data)
    assert p.size == PAYLOAD_LIMIT


@FAST
@given(unknown_ops, UINT32, UINT32, st.binary(max_size=64))
def test_decoder_refuses_unknown_type(number, rq_id, tx_id, payload):
    with pytest.raises(UnexpectedPacket) as info:
        PacketDecoder().feed(wire(number, rq_id, tx_id, payload))
    assert str(info.value) == "a message of unknown type %d" % number


def test_decoder_refuses_bad_message_after_good_ones():
    good = wire(Op.READ, 1, 0, b"value")
    with pytest.raises(UnexpectedPacket):
        PacketDecoder().feed(good + WIRE_HEADER.pack(int(Op.READ), 2, 0, PAYLOAD_LIMIT + 1))


def test_unexpected_packet_is_a_connection_error():
    assert issubclass(UnexpectedPacket, exceptions.ConnectionError)
    assert issubclass(UnexpectedPacket, PyXSError)


# Event.

def test_event_is_a_path_token_pair():
    e = Event("/foo/bar", "a unique token")
    assert e._fields == ("path", "token")
    assert e.path == "/foo/bar" and e.token == "a unique token"
    assert e == ("/foo/bar", "a unique token")
    path, token = e
    assert (path, token) == ("/foo/bar", "a unique token")
    assert Event(path="/a", token="t") == Event("/a", "t")


# The frame layer.

frames = st.tuples(UINT32, UINT32, UINT32, small_payloads)


@FAST
@given(frames)
def test_encode_frame_is_the_wire_layout(frame):
    from pyxs._internal import encode_frame
    assert encode_frame(*frame) == wire(*frame)


@FAST
@given(st.lists(frames, max_size=6), st.data())
def test_frame_decoder_yields_any_operation_number(items, data):
    # Unknown operations included: a server must see them to answer them.
    from pyxs._internal import FrameDecoder
    stream = b"".join(wire(*frame) for frame in items)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)),
                                     max_size=8)))
    bounds = [0] + cuts + [len(stream)]
    decoder = FrameDecoder()
    out = []
    for a, b in zip(bounds, bounds[1:]):
        out.extend(decoder.feed(stream[a:b]))
    assert out == items
    assert decoder.pending == 0


def test_frame_decoder_refuses_oversized_length():
    from pyxs._internal import FrameDecoder
    with pytest.raises(UnexpectedPacket, match="announces 4097 bytes"):
        FrameDecoder().feed(WIRE_HEADER.pack(99, 1, 0, PAYLOAD_LIMIT + 1))


def test_an_oversized_frame_holds_the_frames_before_it():
    # For the emulator, which answers those first, as xenstored does.
    from pyxs._internal import FrameDecoder, OversizedFrame
    good = wire(Op.READ, 1, 0, b"/a\0")
    decoder = FrameDecoder()
    with pytest.raises(OversizedFrame, match="announces 4097 bytes") as caught:
        decoder.feed(good + WIRE_HEADER.pack(99, 2, 0, PAYLOAD_LIMIT + 1))
    assert caught.value.before == [(Op.READ, 1, 0, b"/a\0")]
    assert caught.value.size == PAYLOAD_LIMIT + 1
    assert isinstance(caught.value, UnexpectedPacket)


@pytest.mark.parametrize("decoder_class", [PacketDecoder, FrameDecoder])
def test_after_an_oversized_header_nothing_more_is_decoded(decoder_class):
    # The stream cannot be trusted past it: what follows the bad header
    # is not read as messages, and the refused bytes stay pending.
    decoder = decoder_class()
    good = wire(Op.READ, 1, 0, b"/a\0")
    bad = WIRE_HEADER.pack(int(Op.READ), 2, 0, PAYLOAD_LIMIT + 1)
    with pytest.raises(UnexpectedPacket):
        decoder.feed(good + bad)
    assert decoder.pending == len(bad)
    with pytest.raises(UnexpectedPacket):
        decoder.feed(good)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
@pytest.mark.parametrize("decoder_class", [PacketDecoder, FrameDecoder])
def test_decoders_keep_no_reference_to_what_they_are_fed(decoder_class, kind):
    # A caller may fill its buffer again (recv_into) once feed returns.
    stream = wire(Op.READ, 1, 0, b"abc") + wire(Op.WRITE, 2, 0, b"de")
    for cut in (len(stream), 19, 3):  # one call, a message and a part, a part
        decoder = decoder_class()
        messages = []
        for part in (stream[:cut], stream[cut:]):
            buffer = bytearray(part)
            messages.extend(decoder.feed(kind(buffer)))
            buffer[:] = bytes(len(buffer))
        payloads = [message[-1] for message in messages]
        assert payloads == [b"abc", b"de"]
        assert all(type(payload) is bytes for payload in payloads)


def test_the_two_error_name_policies():
    # The names of the protocol mean the same to both front ends; beyond
    # them, pyxs.Client reads any errno name (and EQUOTA as ENOSPC) where
    # libxenstore, and so the xen.lowlevel.xs stand-in, reads EINVAL.
    import errno
    from pyxs._internal import WIRE_ERRORS, client_errno, libxenstore_errno
    for name, number in WIRE_ERRORS.items():
        assert client_errno(name.decode()) == libxenstore_errno(name) == number
    assert client_errno("EQUOTA") == errno.ENOSPC
    assert libxenstore_errno(b"EQUOTA") == errno.EINVAL
    assert client_errno("ETIMEDOUT") == errno.ETIMEDOUT
    assert libxenstore_errno(b"ETIMEDOUT") == errno.EINVAL
    assert client_errno("ENOTANERROR") == libxenstore_errno(b"ENOTANERROR") == errno.EINVAL


def test_the_daemons_error_name_policy():
    # What C xenstored sends: each error number of the protocol by its
    # name, which both front ends read back; EINVAL for any other number.
    import errno
    from pyxs._internal import WIRE_ERRORS, libxenstore_errno, xenstored_error_name
    for name, number in WIRE_ERRORS.items():
        assert xenstored_error_name(number) == name
        assert libxenstore_errno(xenstored_error_name(number)) == number
    assert xenstored_error_name(errno.EDQUOT) == b"EINVAL"
    assert xenstored_error_name(0) == b"EINVAL"
