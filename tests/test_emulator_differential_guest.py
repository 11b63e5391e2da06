"""Differential tests, second mode: the emulator against C xenstored for
an unprivileged guest domain.

The programs of test_emulator_differential.py run as domain 5, each
connection an open of a XenBus device: on one side C xenstored serving
domain 5's ring (guestring.py, through xenfake), on the other the
emulator's XenBus device for domain 5.  Both devices apply Linux's
``xenbus_dev_frontend`` rules (the same code, pyxs.testing._xenbus), so
every difference in the replies and events, which must be identical,
comes from the daemons.  Dom0 owns ``/t`` for the guest (``n5``) and its
home ``/local/domain/5``, so the guest can build under both; everything
else is dom0's and refused.
"""

import os
import select
import time

import pytest
from hypothesis import HealthCheck, given, settings

import guestring
import realdaemons
from emulator_wire import Closed, RawConnection
from pyxs._internal import HEADER, Op, PacketDecoder
from pyxs.testing import XenStoreServer
from test_emulator_differential import CONNECTIONS, _payload, programs, tx_programs
from test_guest_realdaemons import _check_fuse

DOMID = 5
HOME = b"/local/domain/5"
EXAMPLES = int(os.environ.get("PYXS_DIFF_GUEST_EXAMPLES", "150"))
#: Set up before every program, by dom0, identically on both sides.
PREPARE = [(Op.MKDIR, HOME + b"\0"), (Op.SET_PERMS, HOME + b"\0n5\0"),
           (Op.MKDIR, b"/t\0"), (Op.SET_PERMS, b"/t\0n5\0")]
CLEANUP = [(Op.RM, b"/t\0"), (Op.RM, HOME + b"/t\0")]


class DeviceConnection:
    """One open of a XenBus device, speaking raw messages: the same
    interface as emulator_wire.RawConnection.

    :param dead: tells whether the daemon has stopped serving the ring
        (the emulator where xenstored would have aborted), so that a
        missing reply ends the wait early.
    """

    def __init__(self, path, dead=lambda: False, timeout=10.0):
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._dead = dead
        self._timeout = timeout
        self._decoder = PacketDecoder()
        self._pending = []
        self._rq_id = 0

    def close(self):
        os.close(self.fd)

    def request(self, op, payload, tx_id=0):
        self._rq_id += 1
        try:
            os.write(self.fd, HEADER.pack(op, self._rq_id, tx_id, len(payload)) + payload)
        except OSError as exc:  # Linux's device refused it (a WATCH, say)
            return [], ("write() failed", exc.errno)
        events = []
        while True:
            packet = self._next()
            if packet.op == Op.WATCH_EVENT:
                events.append(packet.payload)
                continue
            assert packet.rq_id == self._rq_id, (packet, self._rq_id)
            return events, (int(packet.op), packet.payload)

    def _next(self):
        deadline = time.monotonic() + self._timeout
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        while not self._pending:
            if self._dead():
                raise Closed()
            if time.monotonic() > deadline:
                raise AssertionError("no reply within %gs" % self._timeout)
            if poll.poll(50):
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def sync(self):
        events, reply = self.request(Op.GET_DOMAIN_PATH, b"0\0")
        assert reply == (Op.GET_DOMAIN_PATH, b"/local/domain/0\0"), reply
        return events


class GuestPair:
    """A real daemon (C xenstored unless *kind* says otherwise) serving
    domain 5 and the emulator's device for it."""

    def __init__(self, workdir_factory, kind="xenstored"):
        self._factory = workdir_factory
        self.kind = kind
        self.requests = 0
        self.real = self.guest = self.emu = None
        self.dirty = False
        self._start()

    def _start(self):
        realdaemons.require(_check_fuse)
        work = self._factory.mktemp("guest")
        self.real = realdaemons.require(realdaemons.start, self.kind, work)
        self.guest = guestring.Guest(self.real, DOMID, work).start()
        self.emu = XenStoreServer(xenbus_path=str(work / "emulated-xenbus"),
                                  xenbus_domid=DOMID).start()
        self.dom0 = [RawConnection(self.real.socket_path), RawConnection(self.emu.socket_path)]
        from pyxs import Client
        with Client(unix_socket_path=self.real.socket_path) as dom0:
            self.guest.introduce(dom0)
        self.dirty = False

    def close(self):
        for conn in self.dom0 or ():
            conn.close()
        for part in (self.guest, self.emu, self.real):
            if part is not None:
                part.stop()

    def restart(self):
        self.close()
        self._start()

    def _emulator_dead(self):
        conn = self.emu._loop._xenbus_conn
        return conn.broken or conn.closed

    def connect(self):
        return [DeviceConnection(self.guest.device),
                DeviceConnection(self.emu.xenbus_path, dead=self._emulator_dead)]

    def _dom0(self, requests):
        for op, payload in requests:
            real, emu = (conn.call(op, payload) for conn in self.dom0)
            assert real == emu, "dom0 %r: emulator %r != xenstored %r" % (payload, emu, real)

    def run(self, program):
        if self.dirty:
            self.restart()
        self.dirty = True
        self._dom0(PREPARE)
        conns = [self.connect() for _ in range(CONNECTIONS)]
        transactions = [[] for _ in range(CONNECTIONS)]
        log = []
        try:
            for index, kind, tx, *args in program:
                if not self._step(conns, transactions, log, index, kind, tx, args):
                    return  # the domain's ring is dead on both sides: restart
            for conn in conns:
                for side in conn:
                    side.close()
            conns = []
            self._dom0(CLEANUP)
        except (AssertionError, Closed, OSError) as exc:
            tail = "" if self.real.alive() else "\nxenstored died:\n" + self.real.log_tail()
            raise AssertionError("%r%s\nprogram so far:\n%s"
                                 % (exc, tail, "\n".join(log))) from None
        finally:
            for pair in conns:
                for conn in pair:
                    conn.close()
        self.dirty = False

    def _step(self, conns, transactions, log, index, kind, tx, args):
        if kind == "reconnect":
            for conn in conns[index]:
                conn.close()
            conns[index] = self.connect()
            transactions[index] = []
            log.append("%d: reconnect" % index)
            return True
        live = transactions[index]
        if kind == "end" and tx is None and live:
            tx = 0
        if tx is None:
            ids = (0, 0)
        elif tx == "bogus":
            ids = (999, 999)
        elif live:
            ids = live[tx % len(live)]
        else:
            ids = (0, 0)
        op, payload = _payload(kind, args)
        real, emu = conns[index]
        log.append("%d: op %d tx %s %r" % (index, op, ids, payload[:80]))
        self.requests += 1
        try:
            emu_events, emu_reply = emu.request(op, payload, ids[1])
        except Closed:
            log.append("   -> the emulator stopped serving the ring (xenstored would abort)")
            return False
        real_events, real_reply = real.request(op, payload, ids[0])
        log.append("   -> %r %r" % (real_events, real_reply))
        assert (emu_events, emu_reply) == (real_events, real_reply), \
            "emulator %r %r != xenstored %r %r" % (emu_events, emu_reply, real_events, real_reply)
        for other, (real_other, emu_other) in enumerate(conns):
            if other != index:
                real_seen, emu_seen = real_other.sync(), emu_other.sync()
                assert emu_seen == real_seen, "open %d: emulator events %r != xenstored %r" \
                    % (other, emu_seen, real_seen)
        rtype, reply = real_reply
        if op == Op.TRANSACTION_START and rtype == Op.TRANSACTION_START:
            live.append((int(reply[:-1]), int(emu_reply[1][:-1])))
        elif op == Op.TRANSACTION_END and ids in live and reply != b"EINVAL\0":
            live.remove(ids)
        elif op == Op.RESET_WATCHES:
            del live[:]
        return True


@pytest.fixture(scope="module")
def guest_pair(tmp_path_factory):
    holder = GuestPair(tmp_path_factory)
    yield holder
    holder.close()


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(program=programs)
def test_guest_programs_match_c_xenstored(guest_pair, program):
    guest_pair.run(program)


@_SETTINGS
@given(program=tx_programs())
def test_guest_transactions_match_c_xenstored(guest_pair, program):
    guest_pair.run(program)


def test_enough_guest_requests_were_compared(guest_pair):
    """The property tests above really ran (they come first here)."""
    if not guest_pair.requests:
        pytest.skip("the property tests did not run")
    print("%d guest requests compared" % guest_pair.requests)
    assert guest_pair.requests >= EXAMPLES * 10


def test_the_device_answers_watch_requests_itself(guest_pair):
    """UNWATCH of an unknown watch is OK from both devices; a malformed
    WATCH is EINVAL: the kernel's answers, the same on both sides."""
    guest_pair.run([(0, "unwatch", None, "/t/none", "tok"),
                    (1, "watch", None, "/t", "tok"),
                    (1, "watch", None, "/t", "tok"),
                    (0, "write", None, "/t/a", b"v")])
    real, emu = guest_pair.connect()
    try:
        for conn in (real, emu):
            assert conn.request(Op.WATCH, b"/t")[1] == (Op.ERROR, b"EINVAL\0")
    finally:
        real.close()
        emu.close()
