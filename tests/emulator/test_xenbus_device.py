"""The guest's XenBus device of pyxs.testing: Linux's frontend rules
(pyxs.testing._xenbus.Frontend, alone), the FUSE file that serves them
(read, write, poll, blocking and not), the emulator's ``xenbus_path``,
the command's ``--xenbus`` and the guest fixtures."""

import errno
import os
import select
import signal
import threading
import time

import pytest

from pyxs import Client, PyXSError
from pyxs._internal import HEADER, Op, PacketDecoder, encode_frame
from pyxs.testing import XenStoreServer
from pyxs.testing._xenbus import DEVICE_BUFFER, Frontend

from ..support import fuse
from ..support.commands import emulator_command, run_pytest, run_python


def _message(op, payload, rq_id=1, tx_id=0):
    """A request as a program writes it to the device (request id 1
    unless said otherwise)."""
    return encode_frame(op, rq_id, tx_id, payload)


def _packets(data):
    return PacketDecoder().feed(bytes(data))


class Ring:
    """The ring side of a Frontend under test: what it sent, and a way to
    answer."""

    def __init__(self):
        self.sent = []
        self.readable = []
        self.frontend = Frontend(self._send, self.readable.append)

    def _send(self, data):
        self.sent.extend(_packets(data))

    def answer(self, op, payload, rq_id=None, tx_id=0):
        rq_id = self.sent[-1].rq_id if rq_id is None else rq_id
        self.frontend.ring_input(_message(op, payload, rq_id, tx_id))

    def write(self, handle, data):
        results = []
        self.frontend.write(handle, data, results.append)
        return results


# The frontend alone.

def test_requests_get_ring_ids_and_replies_the_callers():
    ring = Ring()
    a, b = ring.frontend.open(), ring.frontend.open()
    assert ring.write(a, _message(Op.READ, b"x\0", rq_id=7)) == [18]
    assert ring.write(b, _message(Op.READ, b"y\0", rq_id=7)) == [18]
    first, second = ring.sent
    assert first.rq_id != second.rq_id
    ring.answer(Op.READ, b"2", rq_id=second.rq_id)
    ring.answer(Op.READ, b"1", rq_id=first.rq_id)
    assert _packets(a.replies)[0][:5] == (Op.READ, 7, 0, 1, b"1")
    assert _packets(b.replies)[0][:5] == (Op.READ, 7, 0, 1, b"2")
    assert ring.readable == [b, a]


def test_partial_writes_gather_and_trailing_bytes_are_dropped():
    ring = Ring()
    h = ring.frontend.open()
    message = _message(Op.READ, b"abc\0")
    assert ring.write(h, message[:10]) == [10]
    assert ring.write(h, message[10:] + _message(Op.READ, b"lost\0")) == [len(message) - 10 + 21]
    assert [p.payload for p in ring.sent] == [b"abc\0"]


def test_size_limits():
    ring = Ring()
    h = ring.frontend.open()
    # One write bigger than the buffer: EINVAL, and what was gathered goes.
    assert ring.write(h, b"\0" * 8) == [8]
    assert ring.write(h, b"\0" * (DEVICE_BUFFER - 7)) == [-errno.EINVAL]
    # A header announcing more than the buffer holds: E2BIG.
    assert ring.write(h, HEADER.pack(Op.WRITE, 1, 0, DEVICE_BUFFER - HEADER.size + 1)) \
        == [-errno.E2BIG]
    largest = _message(Op.WRITE, b"p\0" + b"v" * (DEVICE_BUFFER - HEADER.size - 2))
    assert ring.write(h, largest) == [DEVICE_BUFFER]
    assert ring.sent[-1].size == DEVICE_BUFFER - HEADER.size
    assert ring.write(h, b"") == [0]


def test_transactions_belong_to_their_open():
    ring = Ring()
    a, b = ring.frontend.open(), ring.frontend.open()
    ring.write(a, _message(Op.TRANSACTION_START, b"\0"))
    ring.answer(Op.TRANSACTION_START, b"42\0")
    del a.replies[:]
    sent = len(ring.sent)
    ring.write(b, _message(Op.READ, b"x\0", rq_id=3, tx_id=42))
    assert _packets(b.replies)[0][:5] == (Op.ERROR, 3, 42, 7, b"ENOENT\0")
    ring.write(a, _message(Op.TRANSACTION_END, b"commit\0", rq_id=4, tx_id=42))
    assert _packets(a.replies)[0][:5] == (Op.ERROR, 4, 42, 7, b"EINVAL\0")
    assert len(ring.sent) == sent  # the kernel answered both itself
    ring.write(a, _message(Op.READ, b"x\0", rq_id=5, tx_id=42))
    assert ring.sent[-1][:3] == (Op.READ, ring.sent[-1].rq_id, 42)
    # Closing the open aborts the transaction on the ring.
    ring.frontend.release(a)
    assert ring.sent[-1].op == Op.TRANSACTION_END
    assert (ring.sent[-1].tx_id, ring.sent[-1].payload) == (42, b"F\0")


def test_a_transaction_started_by_a_closed_open_is_aborted():
    ring = Ring()
    h = ring.frontend.open()
    ring.write(h, _message(Op.TRANSACTION_START, b"\0"))
    ring.frontend.release(h)
    ring.answer(Op.TRANSACTION_START, b"9\0")
    assert (ring.sent[-1].op, ring.sent[-1].tx_id) == (Op.TRANSACTION_END, 9)
    assert not h.replies


def test_watches_use_kernel_tokens_and_reach_their_open_only():
    ring = Ring()
    a, b = ring.frontend.open(), ring.frontend.open()
    results = ring.write(a, _message(Op.WATCH, b"p\0mine\0", rq_id=11))
    assert results == []  # the write waits for the daemon
    watch = ring.sent[-1]
    path, ktoken, _ = watch.payload.split(b"\0")
    assert path == b"p" and ktoken != b"mine"
    ring.answer(Op.WATCH, b"OK\0")
    assert results == [len(b"p\0mine\0") + HEADER.size]
    ring.frontend.ring_input(_message(Op.WATCH_EVENT, b"p/c\0" + ktoken + b"\0", 0))
    replies = _packets(a.replies)
    assert [(p.op, p.rq_id, p.payload) for p in replies] == [
        (Op.WATCH, 11, b"OK\0"), (Op.WATCH_EVENT, 0, b"p/c\0mine\0")]
    assert not b.replies
    # UNWATCH of an unknown watch: OK without asking the daemon.
    sent = len(ring.sent)
    ring.write(b, _message(Op.UNWATCH, b"p\0mine\0", rq_id=12))
    assert _packets(b.replies)[0][:5] == (Op.UNWATCH, 12, 0, 3, b"OK\0")
    assert len(ring.sent) == sent
    # The real one goes to the daemon with the kernel's token.
    ring.write(a, _message(Op.UNWATCH, b"p\0mine\0", rq_id=13))
    assert ring.sent[-1].payload == b"p\0" + ktoken + b"\0"
    # Events still on their way are dropped.
    del a.replies[:]
    ring.frontend.ring_input(_message(Op.WATCH_EVENT, b"p\0" + ktoken + b"\0", 0))
    assert not a.replies


def test_a_refused_watch_fails_the_write_and_a_malformed_one_is_einval():
    ring = Ring()
    h = ring.frontend.open()
    results = ring.write(h, _message(Op.WATCH, b"p\0t\0"))
    ring.answer(Op.ERROR, b"E2BIG\0")
    assert results == [-errno.E2BIG]
    assert not h.replies and not h.watches
    results = ring.write(h, _message(Op.WATCH, b"p\0t\0"))
    ring.answer(Op.ERROR, b"EQUOTA\0")  # oxenstored's: unknown to Linux
    assert results == [-errno.EINVAL]
    for body in (b"p", b"p\0t"):
        del h.replies[:]
        ring.write(h, _message(Op.WATCH, body, rq_id=5))
        assert _packets(h.replies)[0][:5] == (Op.ERROR, 5, 0, 7, b"EINVAL\0")


def test_release_removes_the_opens_watches():
    ring = Ring()
    h = ring.frontend.open()
    ring.write(h, _message(Op.WATCH, b"p\0t\0"))
    ring.answer(Op.WATCH, b"OK\0")
    ktoken = ring.sent[-1].payload.split(b"\0")[1]
    ring.frontend.release(h)
    assert (ring.sent[-1].op, ring.sent[-1].payload) == (Op.UNWATCH, b"p\0" + ktoken + b"\0")


# The device on the emulator.

def skip_without_fuse():
    """Skip the test when, and only when, this machine cannot mount a
    FUSE file system (the reason says how to enable it)."""
    reason = fuse.unavailable()
    if reason is not None:
        pytest.skip("serving a XenBus device needs FUSE: " + reason)


@pytest.fixture
def device(tmp_path):
    skip_without_fuse()
    server = XenStoreServer(xenbus_path=str(tmp_path / "xenbus"), xenbus_domid=4)
    server.start()
    try:
        with Client(unix_socket_path=server.socket_path) as dom0:
            dom0.mkdir("/local/domain/4")
            dom0.set_permissions("/local/domain/4", ["n4"])
        yield server
    finally:
        server.stop()


def _read_packet(fd, timeout=5.0):
    decoder = PacketDecoder()
    deadline = time.monotonic() + timeout
    poll = select.poll()
    poll.register(fd, select.POLLIN)
    while time.monotonic() < deadline:
        if poll.poll(100):
            packets = decoder.feed(os.read(fd, 65536))
            if packets:
                return packets[0]
    raise AssertionError("nothing to read")


def test_the_device_file_read_write_poll(device):
    fd = os.open(device.xenbus_path, os.O_RDWR | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 100)
        poll = select.poll()
        poll.register(fd, select.POLLIN | select.POLLOUT)
        assert poll.poll(0) == []  # like Linux's device: never POLLOUT
        os.write(fd, _message(Op.GET_DOMAIN_PATH, b"4\0", rq_id=99))
        packet = _read_packet(fd)
        assert packet[:5] == (Op.GET_DOMAIN_PATH, 99, 0, 16, b"/local/domain/4\0")
        # Small reads take the reply piece by piece.
        os.write(fd, _message(Op.READ, b"missing\0", rq_id=100))
        poll.poll(5000)
        assert os.read(fd, 4) == HEADER.pack(Op.ERROR, 0, 0, 0)[:4]
        rest = os.read(fd, 100)
        assert rest[12:] == b"ENOENT\0"
    finally:
        os.close(fd)


def test_a_blocking_read_waits_for_the_reply(device):
    fd = os.open(device.xenbus_path, os.O_RDWR)
    try:
        got = []
        reader = threading.Thread(target=lambda: got.append(os.read(fd, 65536)))
        reader.start()
        time.sleep(0.2)
        assert not got
        with Client(unix_socket_path=device.socket_path) as dom0:
            dom0.write("/local/domain/4/v", "1")
        os.write(fd, _message(Op.READ, b"v\0", rq_id=5))
        reader.join(10)
        assert got and _packets(got[0])[0][:5] == (Op.READ, 5, 0, 1, b"1")
    finally:
        os.close(fd)


def test_each_open_is_a_conversation_of_its_own(device):
    with Client(xen_bus_path=device.xenbus_path) as c, c.monitor() as m, \
            Client(xen_bus_path=device.xenbus_path) as other:
        m.watch("x", "t")
        assert m.wait(timeout=5).path == "x"
        c.write("x", "1")
        assert m.wait(timeout=5).path == "x"
        tx = other.transaction_start()
        other.write("y", "in-tx")
        assert c.read_many(["y"]) == [None]
        other.transaction_end(commit=True)
        assert c.read("y") == "in-tx"
        assert tx
        # Many requests in one go (read-ahead) work: one message per write.
        assert c.read_many(["x", "y", "z"]) == ["1", "in-tx", None]


def test_xenbus_path_must_not_exist(tmp_path):
    taken = tmp_path / "xenbus"
    taken.write_text("")
    with pytest.raises(FileExistsError):
        XenStoreServer(xenbus_path=str(taken)).start()
    assert taken.read_text() == ""


def test_xenbus_domid_is_checked():
    with pytest.raises(ValueError):
        XenStoreServer(xenbus_path="/x", xenbus_domid=-1)
    with pytest.raises(ValueError):
        XenStoreServer(pty=True, pty_domid=3, xenbus_path="/x", xenbus_domid=3)


def test_the_device_goes_with_the_server(device):
    path = device.xenbus_path
    target = os.readlink(path)
    device.stop()
    assert not os.path.lexists(path)
    assert not os.path.exists(os.path.dirname(target))


def test_command_serves_a_xenbus_device(tmp_path):
    skip_without_fuse()
    path = str(tmp_path / "xenbus")
    with emulator_command("--socket", str(tmp_path / "sock"), "--xenbus", path,
                          "--domid", "6") as proc:
        assert proc.stdout.readline().strip().startswith("socket: ")
        line = proc.stdout.readline().strip()
        assert line == "xenbus: %s (domain 6)" % path, proc.stderr.read()
        with Client(xen_bus_path=path) as guest:
            assert guest.get_domain_path(6) == "/local/domain/6"
            with pytest.raises(PyXSError) as info:
                guest.write("/forbidden", "x")
            assert info.value.errno == errno.EACCES
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.lexists(path)


def test_command_refuses_pty_and_xenbus_together(tmp_path):
    proc = run_python("-m", "pyxs.testing", "--pty", "--xenbus", str(tmp_path / "x"), timeout=30)
    assert proc.returncode == 1
    assert "cannot be used together" in proc.stderr


GUEST_PLUGIN_TEST = '''
def test_guest_client(xenstore_guest_client, xenstore_guest_server):
    xenstore_guest_client.write("name", "agent")
    assert xenstore_guest_client.read("/local/domain/1/name") == "agent"
    assert xenstore_guest_server.xenbus_domid == 1
'''


def test_guest_fixtures(tmp_path):
    skip_without_fuse()
    proc = run_pytest(tmp_path, {"test_uses_plugin.py": GUEST_PLUGIN_TEST})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_after_release_a_watch_fails_instead_of_hanging(device):
    from pyxs import ConnectionError as PyxsConnectionError

    with Client(xen_bus_path=device.xenbus_path, socket_timeout=1) as guest, \
            Client(unix_socket_path=device.socket_path) as dom0:
        guest.write("before", "1")
        dom0.release_domain(4)
        with pytest.raises(PyxsConnectionError):  # unanswered: a timeout
            guest.read("before")
        with guest.monitor() as m, pytest.raises(PyxsConnectionError, match="Input/output"):
            m.watch("x", "t")
