"""A made-up guest domain on a real XenStore daemon, for pyxs's tests.

With ``xenfake`` (see tests/xenfake/README.rst) a daemon started by
:mod:`tests.support.daemons` maps a guest's XenStore page from the file
``<daemon.guest_dir>/<domid>/page`` and signals the guest's event channel
through Unix datagram sockets.  This module plays the guest:

* :class:`Ring` speaks ``xs_wire.h``'s ``struct xenstore_domain_interface``
  on that page: a 1024-byte request ring and a 1024-byte response ring,
  free-running 32-bit producer/consumer indexes, each index published
  after the data it covers, and a notification after every move;
* run as ``python -m tests.support.guestring ...`` it is the guest's kernel:
  it serves the ring to programs through ``pyxs.testing``'s
  :class:`~pyxs.testing._xenbus.FuseDevice`, one conversation per open,
  by the rules of Linux's ``/dev/xen/xenbus``;
* :class:`Guest` is the test's handle on all of it: it creates the page,
  starts the script, introduces the domain from dom0, and can make the
  domain dying, raise ``VIRQ_DOM_EXC`` or poke at the ring.

Standard library only (plus pyxs itself).
"""

from __future__ import annotations

import argparse
import mmap
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from pyxs.testing._xenbus import Frontend, FuseDevice, unmount

from . import daemons

#: The checkout: the guest's kernel runs as ``python -m tests.support.guestring`` in it.
_ROOT = Path(__file__).resolve().parents[2]

PAGE_SIZE = 4096
RING_SIZE = 1024
# Offsets in struct xenstore_domain_interface.
REQ, RSP = 0, 1024
# Word indexes (4 bytes each) of its fields after the two rings.
REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD = 512, 513, 514, 515
SERVER_FEATURES, CONNECTION, ERROR = 516, 517, 518
XENSTORE_CONNECTED, XENSTORE_RECONNECT = 0, 1
_MASK = 0xFFFFFFFF

# Datagrams to xenfake's "evtchn" socket: (kind, value).
_KICK = struct.Struct("=II")
KICK_GUEST, KICK_VIRQ = 0, 1
VIRQ_DOM_EXC = 3


class RingFault(Exception):
    """The daemon broke the ring's rules (indexes more than a ring apart)."""


def kick(evtchn_path: str, kind: int, value: int) -> None:
    """Send one event to the daemon through xenfake's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(_KICK.pack(kind, value), evtchn_path)
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # the daemon is gone: nobody to notify


class Ring:
    """Domain *domid*'s side of its XenStore page.

    :param page_path: the shared page file.
    :param evtchn_path: xenfake's event-channel socket (guest to daemon).
    """

    def __init__(self, page_path: str, evtchn_path: str, domid: int) -> None:
        fd = os.open(page_path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, PAGE_SIZE)
        finally:
            os.close(fd)
        # Indexes are read and written as single aligned 32-bit words.
        self.words = memoryview(self._map).cast("I")
        self._evtchn = evtchn_path
        self._domid = domid
        self._kicker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.outgoing = bytearray()

    def close(self) -> None:
        self.words.release()
        self._map.close()
        self._kicker.close()

    @property
    def connected(self) -> bool:
        return self.words[CONNECTION] == XENSTORE_CONNECTED

    def notify(self) -> None:
        try:
            self._kicker.sendto(_KICK.pack(KICK_GUEST, self._domid), self._evtchn)
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError):
            pass

    def pump(self) -> bytes:
        """Put as much of :attr:`outgoing` on the request ring as fits,
        take everything on the response ring, notify the daemon if
        anything moved; return the bytes taken."""
        moved = False
        words = self.words
        if self.outgoing and self.connected:
            cons, prod = words[REQ_CONS], words[REQ_PROD]
            used = (prod - cons) & _MASK
            if used > RING_SIZE:
                raise RingFault("request ring indexes %d/%d" % (cons, prod))
            count = min(RING_SIZE - used, len(self.outgoing))
            self._copy_in(prod, self.outgoing[:count])
            del self.outgoing[:count]
            words[REQ_PROD] = (prod + count) & _MASK  # after the data
            moved = moved or count > 0
        cons, prod = words[RSP_CONS], words[RSP_PROD]
        avail = (prod - cons) & _MASK
        if avail > RING_SIZE:
            raise RingFault("response ring indexes %d/%d" % (cons, prod))
        data = self._copy_out(cons, avail)
        if avail:
            words[RSP_CONS] = prod
            moved = True
        if moved:
            self.notify()
        return data

    def _copy_in(self, prod: int, data: bytes) -> None:
        start = prod % RING_SIZE
        first = min(len(data), RING_SIZE - start)
        self._map[REQ + start:REQ + start + first] = bytes(data[:first])
        self._map[REQ:REQ + len(data) - first] = bytes(data[first:])

    def _copy_out(self, cons: int, count: int) -> bytes:
        start = cons % RING_SIZE
        first = min(count, RING_SIZE - start)
        return (self._map[RSP + start:RSP + start + first]
                + self._map[RSP:RSP + count - first])


# The guest's kernel (run as a script).

def serve(page: str, evtchn: str, notify: str, domid: int, mountpoint: str) -> None:
    """Serve domain *domid*'s ring as a XenBus device at
    *mountpoint*/xenbus until SIGTERM."""
    ring = Ring(page, evtchn, domid)
    waker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.path.exists(notify):
        os.unlink(notify)
    waker.bind(notify)
    waker.setblocking(False)
    device = FuseDevice(mountpoint, "xenbus",
                        lambda readable: Frontend(ring.outgoing.extend, readable))
    device.mount()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    selector = selectors.DefaultSelector()
    selector.register(device.fileno(), selectors.EVENT_READ, "fuse")
    selector.register(waker, selectors.EVENT_READ, "ring")
    print("ready", flush=True)
    failed = False
    try:
        while not stopping:
            for key, _ in selector.select(0.2):
                if key.data == "fuse":
                    if not device.handle():
                        stopping.append(True)
                else:
                    try:
                        while waker.recv(64):
                            pass
                    except BlockingIOError:
                        pass
            # Move bytes until nothing moves; a lost notification costs at
            # most one select() timeout.
            while not failed:
                try:
                    data = ring.pump()
                except RingFault as exc:
                    print("ring fault: %s" % exc, file=sys.stderr, flush=True)
                    failed = True  # the conversation is over; keep the device
                    break
                if not data:
                    break
                device.frontend.ring_input(data)
    finally:
        device.unmount()
        ring.close()
        waker.close()
        os.unlink(notify)


# The test's handle.

class Guest:
    """Made-up domain *domid* on *daemon* (a :class:`daemons.Daemon`
    started with guests enabled), its XenBus device served under
    *workdir*.

    :ivar device: the path programs open, as they would /dev/xen/xenbus.
    """

    def __init__(self, daemon, domid: int, workdir: Path) -> None:
        self.daemon = daemon
        self.domid = domid
        self.dir = Path(daemon.guest_dir) / str(domid)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.page_path = self.dir / "page"
        self.evtchn_path = str(Path(daemon.guest_dir) / "evtchn")
        self.mountpoint = Path(workdir) / ("xenbus-%d" % domid)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.device = str(self.mountpoint / "xenbus")
        self._proc: Optional[subprocess.Popen] = None
        self._map: Optional[mmap.mmap] = None

    def start(self, timeout: float = 20.0) -> "Guest":
        """Create the page (``connection`` = XENSTORE_RECONNECT, as a
        guest leaves it before the daemon takes over) and start the
        guest's kernel."""
        page = bytearray(PAGE_SIZE)
        struct.pack_into("=I", page, CONNECTION * 4, XENSTORE_RECONNECT)
        self.page_path.write_bytes(bytes(page))
        fd = os.open(str(self.page_path), os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, PAGE_SIZE)
        finally:
            os.close(fd)
        env = dict(os.environ, PYTHONPATH=str(_ROOT))
        env.pop("LD_PRELOAD", None)

        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "--page", str(self.page_path),
             "--evtchn", self.evtchn_path, "--notify", str(self.dir / "notify"),
             "--domid", str(self.domid), "--mount", str(self.mountpoint)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
            preexec_fn=daemons.death_signal_preexec(os.getpid()))
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            self._proc.wait(timeout)
            raise RuntimeError("the guest's ring server did not start:\n%s%s"
                               % (line, self._proc.stderr.read()))
        return self

    @property
    def words(self) -> memoryview:
        """The page as 32-bit words (indexes at REQ_CONS... ERROR)."""
        return memoryview(self._map).cast("I")

    def introduce(self, dom0, mfn: int = 0xFEFFF, port: int = 1,
                  timeout: float = 10.0) -> None:
        """INTRODUCE the domain through *dom0* (a pyxs Client), then
        notify its event channel until the daemon has taken the ring over
        (C xenstored does so during INTRODUCE, oxenstored when it first
        looks at the ring)."""
        dom0.introduce_domain(self.domid, mfn, port)
        deadline = time.monotonic() + timeout
        words = self.words
        try:
            while words[CONNECTION] != XENSTORE_CONNECTED:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s did not connect domain %d's ring"
                                       % (self.daemon.kind, self.domid))
                self.notify()
                time.sleep(0.01)
        finally:
            words.release()

    def notify(self) -> None:
        """Raise the domain's event channel, as the guest does after
        moving an index."""
        kick(self.evtchn_path, KICK_GUEST, self.domid)

    def set_dying(self) -> None:
        """Make the domain-info calls report the domain as dying, and
        raise VIRQ_DOM_EXC so that the daemon looks."""
        (self.dir / "dying").touch()
        kick(self.evtchn_path, KICK_VIRQ, VIRQ_DOM_EXC)

    def pause(self) -> None:
        """Stop the guest's kernel (SIGSTOP): nobody reads the ring."""
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._proc.pid, signal.SIGCONT)

    def put_request(self, message: bytes) -> None:
        """Write *message* on the request ring behind the kernel's back
        (pause it first) and publish it; the caller notifies."""
        words = self.words
        try:
            prod = words[REQ_PROD]
            for i, byte in enumerate(message):
                self._map[REQ + (prod + i) % RING_SIZE] = byte
            words[REQ_PROD] = (prod + len(message)) & _MASK
        finally:
            words.release()

    def stderr(self) -> str:
        """What the guest's ring server reported (after :meth:`stop`)."""
        return self._stderr

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    _stderr = ""

    def stop(self) -> None:
        """Stop the ring server; unmount the device if it could not."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._stderr = self._proc.stderr.read()
            self._proc.stdout.close()
            self._proc.stderr.close()
            self._proc = None
            if os.path.ismount(str(self.mountpoint)):
                unmount(str(self.mountpoint))
        if self._map is not None:
            self._map.close()
            self._map = None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", required=True)
    parser.add_argument("--evtchn", required=True)
    parser.add_argument("--notify", required=True)
    parser.add_argument("--domid", type=int, required=True)
    parser.add_argument("--mount", required=True)
    args = parser.parse_args(argv)
    serve(args.page, args.evtchn, args.notify, args.domid, args.mount)


if __name__ == "__main__":
    main()
