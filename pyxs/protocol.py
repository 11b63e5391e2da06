"""The XenStore wire format: messages as :class:`Packet` objects, their
encoding, and :class:`PacketDecoder` for a stream of received bytes.
Nothing here does I/O.

>>> from pyxs.protocol import Op, Packet
>>> packet = Packet(Op.READ, b"/vm/1/name\\x00", rq_id=1)
>>> Packet.decode(bytes(packet)) == packet
True

.. versionadded:: 0.5.0
   The public name of the module, which before was only importable as
   ``pyxs._internal`` (that name still works).
"""

from ._internal import HEADER, PAYLOAD_MAX, WIRE_ERRORS, Event, Op, Packet, PacketDecoder

__all__ = ["Op", "Packet", "Event", "PacketDecoder", "HEADER", "PAYLOAD_MAX", "WIRE_ERRORS"]
