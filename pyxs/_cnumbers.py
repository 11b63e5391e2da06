"""C's numbers: its string-to-number functions, its fixed-width integers
and libxenstore's permission letters, for the two places pyxs must read
and write numbers exactly as Xen's C code does: the
:mod:`xen.lowlevel.xs` compatibility shim (transaction handles,
permissions, watch tokens) and the emulator in :mod:`pyxs.testing`
(request arguments, permission listings, ids that wrap at 32 bits)."""

from typing import Dict, Optional, Tuple

#: The characters C's ``isspace`` accepts.
C_SPACE = b" \t\n\v\f\r"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
ULONG_MAX = (1 << 64) - 1
LONG_MAX = (1 << 63) - 1


def _scan_number(raw: bytes, base: int) -> Tuple[bool, int, int]:
    """Scan an integer as ``strtol``/``strtoul`` do: leading blanks, a
    sign, ``0x`` for base 16 (and base 0), a leading ``0`` meaning octal
    in base 0.  Returns ``(negative, magnitude, end)``; *end* is 0 when
    no digit was found."""
    i, n = 0, len(raw)
    while i < n and raw[i] in C_SPACE:
        i += 1
    negative = False
    if i < n and raw[i] in b"+-":
        negative = raw[i] == ord("-")
        i += 1
    if (base in (0, 16) and raw[i:i + 2] in (b"0x", b"0X")
            and i + 2 < n and chr(raw[i + 2]).lower() in _DIGITS[:16]):
        i, base = i + 2, 16
    elif base == 0:
        base = 8 if raw[i:i + 1] == b"0" else 10
    start, digits = i, _DIGITS[:base]
    while i < n and raw[i] < 128 and chr(raw[i]).lower() in digits:
        i += 1
    if i == start:
        return False, 0, 0
    return negative, int(raw[start:i], base), i


def strtoul(raw: bytes, base: int) -> int:
    """C's ``strtoul`` on a 64-bit machine."""
    negative, magnitude, _ = _scan_number(raw, base)
    if magnitude > ULONG_MAX:
        return ULONG_MAX
    return -magnitude & ULONG_MAX if negative else magnitude


def strtol(raw: bytes, base: int) -> Tuple[int, int]:
    """C's ``strtol`` on a 64-bit machine: ``(value, end)``, *end* 0 when
    nothing was converted; out-of-range values saturate."""
    negative, magnitude, end = _scan_number(raw, base)
    if negative:
        return max(-magnitude, -LONG_MAX - 1), end
    return min(magnitude, LONG_MAX), end


def signed(value: int, bits: int) -> int:
    """*value* stored in an unsigned C integer of *bits* bits and read
    back as a signed one."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def u32(value: int) -> int:
    """*value* stored in a C ``uint32_t``, the width of every number in a
    message header."""
    return value & 0xFFFFFFFF


#: The letter of each permission, by its access bits (1 read, 2 write),
#: as libxenstore's ``xs_perm_to_string`` writes it.
PERM_LETTERS: Dict[int, bytes] = {0: b"n", 1: b"r", 2: b"w", 3: b"b"}

_PERM_ACCESS = {letter: access for access, letter in PERM_LETTERS.items()}


def parse_perm(entry: bytes) -> Optional[Tuple[int, int]]:
    """One permission entry (``b0``, ``r5``) read as libxenstore's
    ``xs_strings_to_perms`` reads it, C xenstored included:
    ``(domid, access)``, the domain id as ``strtol`` in base 0 gives it
    (the caller truncates it) and the access as bits, 1 read and 2
    write; None for an entry that is malformed."""
    access = _PERM_ACCESS.get(entry[:1])
    value, end = strtol(entry[1:], 0)
    if access is None or len(entry) == 1 or end != len(entry) - 1:
        return None
    return value, access
