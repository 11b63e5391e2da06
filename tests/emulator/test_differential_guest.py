"""Differential tests, second mode: the emulator against C xenstored for
an unprivileged guest domain.

The programs of tests/emulator/test_differential.py run as domain 5, each
connection an open of a XenBus device: on one side C xenstored serving
domain 5's ring (tests/support/guestring.py, through xenfake), on the other the
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

from pyxs import Client
from pyxs._internal import Op
from pyxs.testing import XenStoreServer

from ..support import daemons, fuse, guestring, xen
from ..support.wire import Closed, PtyConnection, RawConnection
from .test_differential import Pair, pair_fixture, programs, run_programs, tx_programs

pytestmark = pytest.mark.realdaemon

DOMID = 5
HOME = b"/local/domain/5"
EXAMPLES = int(os.environ.get("PYXS_DIFF_GUEST_EXAMPLES", "150"))
#: Set up before every program, by dom0, identically on both sides.
PREPARE = [(Op.MKDIR, HOME + b"\0"), (Op.SET_PERMS, HOME + b"\0n5\0"),
           (Op.MKDIR, b"/t\0"), (Op.SET_PERMS, b"/t\0n5\0")]
CLEANUP = [(Op.RM, b"/t\0"), (Op.RM, HOME + b"/t\0")]


class DeviceConnection(PtyConnection):
    """One open of a XenBus device, speaking raw messages, like
    tests.support.wire.RawConnection on a socket.

    :param dead: tells whether the daemon has stopped serving the ring
        (the emulator where xenstored would have aborted), so that a
        missing reply ends the wait early with Closed.
    """

    def __init__(self, path, dead=lambda: False, timeout=10.0):
        super().__init__(path)
        self._dead = dead
        self._timeout = timeout

    def request(self, op, payload, tx_id=0):
        if self._dead():
            raise Closed()
        try:
            rq_id = self.send(op, payload, tx_id)
        except OSError as exc:  # Linux's device refused it (a WATCH, say)
            return [], ("write() failed", exc.errno)
        return self.reply(rq_id)

    def _read(self):
        deadline = time.monotonic() + self._timeout
        poll = select.poll()
        poll.register(self.fd, select.POLLIN)
        while True:
            if self._dead():
                raise Closed()
            if time.monotonic() > deadline:
                raise AssertionError("no reply within %gs" % self._timeout)
            if poll.poll(50):
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                if data:  # A device has no end: nothing yet, wait on.
                    return data


class GuestPair(Pair):
    """A real daemon (C xenstored unless *kind* says otherwise) serving
    domain 5 and the emulator's device for it, kept in step; each
    connection of a program is an open of the device."""

    def __init__(self, workdir_factory, kind="xenstored"):
        self.kind = kind
        self.guest = None
        self.dom0 = []
        super().__init__(workdir_factory)

    def _start(self):
        xen.require(fuse.check)
        work = self._factory.mktemp("guest")
        self.real = xen.require(daemons.start, self.kind, work)
        self.guest = guestring.Guest(self.real, DOMID, work).start()
        self.emu = XenStoreServer(xenbus_path=str(work / "emulated-xenbus"),
                                  xenbus_domid=DOMID).start()
        self.dom0 = [RawConnection(self.real.socket_path), RawConnection(self.emu.socket_path)]
        with Client(unix_socket_path=self.real.socket_path) as dom0:
            self.guest.introduce(dom0)
        self.dirty = False

    def close(self):
        for conn in self.dom0:
            conn.close()
        if self.guest is not None:
            self.guest.stop()
        super().close()

    def _emulator_dead(self):
        conn = self.emu._loop._xenbus_conn
        return conn.broken or conn.closed

    def connect(self):
        real = self.real
        return [DeviceConnection(self.guest.device, dead=lambda: not real.alive()),
                DeviceConnection(self.emu.xenbus_path, dead=self._emulator_dead)]

    def _dom0(self, requests):
        for op, payload in requests:
            real, emu = (conn.call(op, payload) for conn in self.dom0)
            assert real == emu, "dom0 %r: emulator %r != xenstored %r" % (payload, emu, real)

    def run(self, program):
        if self.dirty:
            self.restart()
        self._dom0(PREPARE)
        super().run(program)
        if self._emulator_dead():
            self.dirty = True  # xenstored would have aborted: start afresh
        else:
            self._dom0(CLEANUP)


guest_pair = pair_fixture(GuestPair)


def test_guest_programs_match_c_xenstored(guest_pair):
    run_programs(guest_pair, programs, EXAMPLES)


def test_guest_transactions_match_c_xenstored(guest_pair):
    run_programs(guest_pair, tx_programs(), EXAMPLES)


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
