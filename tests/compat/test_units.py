"""pyxs._compat in situations a real daemon does not produce, and its
C-emulating helpers against the C library itself.

* A scripted fake daemon answers with odd error names, odd permission
  strings, odd transaction ids, foreign watch tokens and replies of the
  wrong type; the real xen.lowlevel.xs and pyxs._compat both talk to it
  and must agree (the same differential harness as tests/compat/test_differential.py).
* The string-to-number functions the shim copies from C (strtoul,
  strtol) are checked against libc's, through ctypes.
* What pyxs._compat does differently on purpose is pinned down here too:
  the integer 0 as a transaction handle, timeouts, no reader thread.
"""

import ctypes
import errno
import os
import select
import threading
import time
import uuid

import pytest
from hypothesis import assume, given, settings, strategies as st

import pyxs._cnumbers as cnumbers
import pyxs._compat as compat
import pyxs.connection
from pyxs._internal import Op, encode_frame

from ..support.fakeserver import FakeServer
from ..support.wire import FrameReader
from ..support.xen_clients import open_handle
from .harness import SIDES, Recorder, differential

# A scripted XenStore.

class FakeDaemon(FakeServer):
    """A Unix-socket server that answers each request through
    ``script(op, payload) -> [(op, payload), ...]`` (the first packet
    gets the request's ids, the others go out as they are, with ids 0).
    Has the two attributes the harness uses: ``socket_path``, ``alive()``.
    """

    kind = "fake"

    def __init__(self, directory, script):
        self._script = script
        self._stopped = False
        super().__init__(directory / ("fake-%s.sock" % uuid.uuid4().hex[:8]), self._answer)

    def alive(self):
        return not self._stopped

    def stop(self):
        self._stopped = True
        self.close()

    def _answer(self, connection, _index):
        frames = FrameReader(lambda: connection.recv(65536))
        try:
            while True:
                op, rq_id, tx_id, payload = frames.read_frame()
                connection.sendall(b"".join(
                    encode_frame(reply_op, *((rq_id, tx_id) if i == 0 else (0, 0)), reply)
                    for i, (reply_op, reply) in enumerate(self._script(op, payload))))
        except OSError:
            return  # The client went away (Closed included).


def scripted(transaction_ids):
    """The fake daemon's answers, chosen by the request's path;
    TRANSACTION_START answers with *transaction_ids* in turn, twice over
    (once for each side of the differential)."""
    transaction_ids = list(transaction_ids) * 2

    def answer(op, payload):
        path = payload.split(b"\0", 1)[0]
        if op == Op.READ and path.startswith(b"/err/"):
            return [(Op.ERROR, path[len(b"/err/"):] + b"\0")]
        if op == Op.READ and path == b"/wrong-type":
            return [(Op.WRITE, b"OK\0")]
        if op == Op.GET_PERMS and path.startswith(b"/perm/"):
            return [(Op.GET_PERMS, bytes.fromhex(path[len(b"/perm/"):].decode()))]
        if op == Op.TRANSACTION_START:
            return [(Op.TRANSACTION_START, transaction_ids.pop(0))]
        if op == Op.WATCH:
            token = payload.split(b"\0")[1]
            events = [(Op.WATCH_EVENT, b"%s\0%s\0" % (path, token))]
            if path == b"/foreign":
                # Tokens that are not ours: not a number, and a number that
                # is no object's address.
                events = [(Op.WATCH_EVENT, b"/foreign/a\0junk\0"),
                          (Op.WATCH_EVENT, b"/foreign/b\0" + b"8\0"),
                          (Op.WATCH_EVENT, b"/foreign/c\0" + b" " + token + b"xyz\0")] + events
            return [(Op.WATCH, b"OK\0")] + events
        if op == Op.READ:
            return [(Op.READ, b"value of " + path)]
        return [(op, b"OK\0")]

    return answer


@pytest.fixture
def run_fake(xs_lowlevel, tmp_path):
    daemons = []

    def _run(scenario, transaction_ids=()):
        answer = scripted(transaction_ids)
        fakes = {side: FakeDaemon(tmp_path, answer) for side in SIDES}
        daemons.extend(fakes.values())
        return differential(scenario, {"real": xs_lowlevel, "pyxs": compat}, fakes)
    yield _run
    for daemon in daemons:
        daemon.stop()


def test_error_names_map_as_in_libxenstore(run_fake):
    names = ["EQUOTA", "ENOSPC", "EPERM", "EISCONN", "E2BIG", "EAGAIN", "EROFS", "EBUSY",
             "ENOTEMPTY", "EIO", "EISDIR", "EEXIST", "EACCES", "ENOMEM", "ENOSYS",
             "ENOTSUP", "ETIMEDOUT", "einval", "", "ENOENT"]

    def scenario(rec: Recorder):
        h = rec.open()
        for name in names:
            rec.call("read answered %r" % name, h.read, "", "/err/" + name)
        rec.call("a good read", h.read, "", "/fine")
    run_fake(scenario)


def test_permission_strings_parse_as_in_libxenstore(run_fake):
    replies = [b"n0\0", b"r5\0b7\0w9\0", b"r0x10\0", b"b010\0", b"n-1\0", b"r 5\0",
               b"r+5\0", b"r4294967297\0", b"r99999999999999999999\0", b"r-99999999999999999999\0",
               b"x5\0", b"r\0", b"r5junk\0", b"r0x\0", b"\0", b"", b"r5\0trailing",
               b"R5\0", b"r-\0", b"n2147483648\0"]

    def scenario(rec: Recorder):
        h = rec.open()
        for reply in replies:
            rec.call("get_permissions answered %r" % reply, h.get_permissions, "",
                     "/perm/" + reply.hex())
    run_fake(scenario)


def test_transaction_ids_parse_as_in_libxenstore(run_fake):
    ids = [b"1\0", b"10\0", b"0x10\0", b"010\0", b"4294967297\0", b"  7\0", b"255"]

    def scenario(rec: Recorder):
        h = rec.open()
        for reply in ids:
            rec.call("transaction_start answered %r" % reply, h.transaction_start)
    run_fake(scenario, transaction_ids=ids)


def test_events_with_foreign_tokens(run_fake):
    def scenario(rec: Recorder):
        h = rec.open()
        t = rec.token("t", object())
        rec.call("watch", h.watch, "/foreign", t)
        for i in range(4):
            rec.readable("readable %d" % i, h, 5)
            rec.event("check_watch %d" % i, h.check_watch)
        rec.call("watch again", h.watch, "/foreign", t)
        rec.event("read_watch skips EAGAIN but not EINVAL", h.read_watch)
        rec.event("read_watch skips the foreign number", h.read_watch)
        rec.event("read_watch", h.read_watch)
    run_fake(scenario)


def test_reply_of_the_wrong_type_breaks_the_handle(run_fake):
    def scenario(rec: Recorder):
        h = rec.open()
        rec.call("read", h.read, "", "/fine")
        rec.call("a reply of the wrong type", h.read, "", "/wrong-type")
        rec.failed_for_good(h, "/fine")
    run_fake(scenario)


# What the C parser and the modules do to arguments, beyond the logs.


def test_constructor_keeps_the_type_error_as_cause(real_daemon, xs_lowlevel):
    for args, kwargs in (((None,), {}), ((1, 2), {}), ((), {"other": 1})):
        causes = []
        for module in (xs_lowlevel, compat):
            with pytest.raises(SystemError) as info:
                open_handle(module, real_daemon.socket_path, *args, **kwargs)
            cause = info.value.__cause__
            causes.append((type(cause).__name__, cause.args))
        assert causes[0] == causes[1]


def test_method_signatures_are_documented():
    import inspect
    assert str(inspect.signature(compat.xs.read)) == "(self, transaction: Union[str, int], " \
        "path: str, /) -> Optional[bytes]"
    assert "transaction_end(transaction, abort=0)" in compat.xs.transaction_end.__doc__
    for name in dir(compat.xs):
        if not name.startswith("_"):
            assert getattr(compat.xs, name).__doc__, name


# Deliberate differences.


def test_integer_zero_means_no_transaction(real_daemon, xs_lowlevel, node_root):
    real = open_handle(xs_lowlevel, real_daemon.socket_path)
    ours = open_handle(compat, real_daemon.socket_path)
    try:
        ours.write(0, node_root + "/zero", "value")
        assert ours.read(0, node_root + "/zero") == b"value"
        assert ours.ls(0, node_root) == ["zero"]
        # The C extension refuses it; any other integer is refused by both.
        with pytest.raises(TypeError, match="argument 1 must be str, not int"):
            real.read(0, node_root + "/zero")
        for handle in (real, ours):
            with pytest.raises(TypeError, match="argument 1 must be str, not int"):
                handle.read(1, node_root + "/zero")
            with pytest.raises(TypeError, match="argument 1 must be str, not bool"):
                handle.read(False, node_root + "/zero")
    finally:
        real.close()
        ours.close()


def test_an_unresponsive_daemon_times_out(start_daemon, monkeypatch):
    # The C extension would wait for ever; pyxs gives up after the
    # connection's timeout, and the handle is then broken.
    daemon = start_daemon("xenstored")
    monkeypatch.setattr(pyxs.connection, "DEFAULT_TIMEOUT", 0.5)
    handle = open_handle(compat, daemon.socket_path)
    daemon.pause()
    try:
        with pytest.raises(compat.Error) as info:
            handle.read("", "/tool")
        assert info.value.args == (errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
    finally:
        daemon.resume()
    with pytest.raises(compat.Error) as info:
        handle.read("", "/tool")
    assert info.value.args == (errno.EBADF, os.strerror(errno.EBADF))
    handle.close()


def test_fileno_wakes_on_its_own_and_one_thread_drains(real_daemon, node_root):
    """As with libxenstore, a handle with a watch has one thread of its
    own that reads events as they come; it goes with the last watch."""
    before = threading.active_count()
    handle = open_handle(compat, real_daemon.socket_path)
    writer = open_handle(compat, real_daemon.socket_path)
    try:
        token = object()
        handle.watch(node_root, token)
        fd = handle.fileno()
        assert handle.read_watch() == (node_root, token)
        assert select.select([fd], [], [], 0.2)[0] == []
        writer.write("", node_root + "/x", "1")
        # Nothing was called on `handle` since: the descriptor woke up on
        # its own.
        assert select.select([fd], [], [], 5)[0] == [fd]
        assert handle.check_watch() == (node_root + "/x", token)
        assert threading.active_count() == before + 1
        handle.unwatch(node_root, token)
        deadline = time.monotonic() + 10
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threading.active_count() == before
    finally:
        handle.close()
        writer.close()


def test_threads_share_a_handle(real_daemon, node_root):
    handle = open_handle(compat, real_daemon.socket_path)
    token = ("thread", "token")
    try:
        handle.watch(node_root, token)
        assert handle.read_watch() == (node_root, token)
        seen, errors = [], []

        def watcher():
            try:
                for _ in range(20):
                    seen.append(handle.read_watch())
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        def worker(n):
            try:
                for i in range(10):
                    handle.write("", "%s/%d/%d" % (node_root, n, i), str(i))
                    assert handle.read("", "%s/%d/%d" % (node_root, n, i)) == str(i).encode()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=watcher)] + [
            threading.Thread(target=worker, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert all(t is token for _, t in seen)
        assert sorted(p for p, _ in seen) == sorted(
            "%s/%d/%d" % (node_root, n, i) for n in range(2) for i in range(10))
    finally:
        handle.close()


def test_close_wakes_a_blocked_read_watch(real_daemon, node_root):
    handle = open_handle(compat, real_daemon.socket_path)
    handle.watch(node_root, 1)
    handle.read_watch()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(_outcome(handle.read_watch)))
    thread.start()
    time.sleep(0.2)
    handle.close()
    thread.join(5)
    assert outcome == [("Error", (errno.EINVAL, os.strerror(errno.EINVAL)))]


def _outcome(func):
    try:
        return ("value", func())
    except Exception as e:  # noqa: BLE001
        return (type(e).__name__, e.args)


# C's string-to-number functions, against libc.


_libc = ctypes.CDLL(None)
_libc.strtoul.restype = ctypes.c_ulong
_libc.strtoul.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
_libc.strtol.restype = ctypes.c_long
_libc.strtol.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]

#: Numbers at the edges of C's 64-bit long and unsigned long.
EDGE_DIGITS = ["18446744073709551615", "18446744073709551616", "9223372036854775807",
               "9223372036854775808", "99999999999999999999", "ffffffffffffffff",
               "10000000000000000", "7fffffffffffffff", "8000000000000000", "0", ""]


@st.composite
def c_numbers(draw):
    """Text shaped like what strtol reads: blanks, a sign, a base prefix,
    digits (often 20 of them, past 64 bits) and a tail."""
    blanks = draw(st.text(" \t\n\v\f\r", max_size=2))
    sign = draw(st.sampled_from(["", "+", "-"]))
    prefix = draw(st.sampled_from(["", "0", "0x", "0X", "00x"]))
    digits = draw(st.one_of(st.text("0123456789", max_size=22),
                            st.text("0123456789abcdefABCDEF", min_size=15, max_size=20),
                            st.sampled_from(EDGE_DIGITS)))
    tail = draw(st.sampled_from(["", "g", " ", "x", "9", "-", "\u00e9"]))
    return (blanks + sign + prefix + digits + tail).encode("utf-8")


numbers = (c_numbers()
           | st.text(alphabet=" \t\n+-0123456789abcdefxXgG\u00e9", max_size=24).map(
               lambda s: s.encode("utf-8"))
           | st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"")))


def _libc_call(function, raw, base):
    buffer = ctypes.create_string_buffer(raw)
    end = ctypes.c_char_p()
    value = function(buffer, ctypes.byref(end), base)
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buffer)
    return value, consumed


@settings(max_examples=500, deadline=None)
@given(numbers, st.sampled_from([0, 2, 8, 10, 16, 36]))
def test_strtoul_matches_libc(raw, base):
    assert cnumbers.strtoul(raw, base) == _libc_call(_libc.strtoul, raw, base)[0]


@settings(max_examples=500, deadline=None)
@given(numbers, st.sampled_from([0, 2, 8, 10, 16, 36]))
def test_strtol_matches_libc(raw, base):
    # The shim parses with base 0, the emulator with bases 0 and 10.
    value, end = cnumbers.strtol(raw, base)
    libc_value, consumed = _libc_call(_libc.strtol, raw, base)
    assert value == libc_value
    assert end == consumed or (end == 0 and consumed == 0)


@pytest.mark.parametrize("raw", [b"", b"0x", b"0xg", b"-0x1", b"  +12", b"FFFFFFFFFFFFFFFFF",
                                 b"-FFFFFFFFFFFFFFFFF", b"010", b"09", b"0X1f"])
def test_strtoul_edges(raw):
    for base in (0, 16):
        assert cnumbers.strtoul(raw, base) == _libc_call(_libc.strtoul, raw, base)[0]


@pytest.mark.parametrize("raw", [b"0xg", b"0x", b"0Xg1", b"-0xg", b" 0xz", b"0x1g", b"0xG"],
                         ids=["0xg", "0x", "0Xg1", "-0xg", "space-0xz", "0x1g", "0xG"])
def test_a_base_prefix_without_a_hex_digit_is_a_zero(raw):
    # strtol reads the "0" alone and stops before the "x": the end counts.
    for base in (0, 16):
        assert cnumbers.strtol(raw, base) == _libc_call(_libc.strtol, raw, base)


#: Both sides of the 64-bit limits, with both signs.
LIMITS = [sign + digits for sign in (b"", b"-", b"+") for digits in (
    b"18446744073709551614", b"18446744073709551615", b"18446744073709551616",
    b"9223372036854775807", b"9223372036854775808", b"9223372036854775809",
    b"0xffffffffffffffff", b"0x10000000000000000", b"0x8000000000000000")]


@pytest.mark.parametrize("raw", LIMITS, ids=[r.decode() for r in LIMITS])
def test_64_bit_limits_as_in_libc(raw):
    for base in (0, 10, 16):
        assert cnumbers.strtoul(raw, base) == _libc_call(_libc.strtoul, raw, base)[0]
        value, end = cnumbers.strtol(raw, base)
        assert (value, end) == _libc_call(_libc.strtol, raw, base)


@pytest.mark.parametrize("entry, expected", [
    (b"b0", (0, 3)), (b"r5", (5, 1)), (b"w0x10", (16, 2)), (b"n010", (8, 0)),
    (b"r -1", (-1, 1)), (b"r", None), (b"", None), (b"x5", None), (b"R5", None),
    (b"r5junk", None), (b"r0x", None)])
def test_permission_entries_parse_as_in_libxenstore(entry, expected):
    # Shared by the shim (GET_PERMS replies) and the emulator (SET_PERMS).
    assert cnumbers.parse_perm(entry) == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"n", b"r", b"w", b"b", b"x", b"R", b"0"]), numbers)
def test_permission_entries_parse_as_libc_reads_them(letter, number):
    # libxenstore: the letter gives the access, the rest must be wholly
    # one number for strtol in base 0.
    entry = letter + number
    access = {b"n": 0, b"r": 1, b"w": 2, b"b": 3}.get(letter)
    value, consumed = _libc_call(_libc.strtol, number, 0)
    well_formed = access is not None and number != b"" and consumed == len(number)
    # strtol stops at a NUL, which a C string cannot hold anyway.
    assume(b"\0" not in number)
    assert cnumbers.parse_perm(entry) == ((value, access) if well_formed else None)


@pytest.mark.parametrize("value, bits, expected", [
    (0, 32, 0), (2 ** 31 - 1, 32, 2 ** 31 - 1), (2 ** 31, 32, -2 ** 31), (2 ** 32 - 1, 32, -1),
    (2 ** 32, 32, 0), (2 ** 32 + 5, 32, 5), (2 ** 63 - 1, 64, 2 ** 63 - 1), (2 ** 63, 64, -2 ** 63),
    (-1, 16, -1), (0x7FFF, 16, 0x7FFF), (0x8000, 16, -0x8000)])
def test_signed_reads_the_low_bits_as_twos_complement(value, bits, expected):
    c_type = {16: ctypes.c_int16, 32: ctypes.c_int32, 64: ctypes.c_int64}[bits]
    assert cnumbers.signed(value, bits) == expected == c_type(value).value


def test_wire_token_is_the_address_as_a_signed_long():
    token = object()
    assert compat._wire_token(token) == b"%d" % id(token)
    assert cnumbers.signed(2 ** 64 - 1, 64) == -1
    assert cnumbers.signed(2 ** 31, 32) == -2 ** 31


def test_fileno_without_epoll_or_kqueue(real_daemon, monkeypatch):
    # As the C extension does when it cannot make its pipe.
    import select as select_module
    for name in ("epoll", "kqueue"):
        monkeypatch.delattr(select_module, name, raising=False)
    handle = open_handle(compat, real_daemon.socket_path)
    try:
        assert handle.fileno() == -1
        assert handle.read("", "/tool") is not None
    finally:
        handle.close()


def test_permission_letters_are_one_table():
    # What set_permissions writes is what parse_perm reads back.
    assert sorted(cnumbers.PERM_LETTERS) == [0, 1, 2, 3]
    for access, letter in cnumbers.PERM_LETTERS.items():
        assert cnumbers.parse_perm(letter + b"7") == (7, access)


def test_u32_is_a_uint32_t_cast():
    assert cnumbers.u32(-1) == 2 ** 32 - 1
    assert cnumbers.u32(2 ** 32 + 5) == 5
    assert cnumbers.u32(7) == 7
