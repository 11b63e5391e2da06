"""pyxs as an unprivileged guest domain, against Xen 4.17's real daemons.

Each test gets a private C xenstored or oxenstored and a made-up domain 5
(see tests/support/guestring.py): the daemon maps its ring page from a file and signals
it through xenfake's sockets, and the ring is offered as a XenBus device
file with Linux's rules, one conversation per open.  Dom0 prepares
``/local/domain/5`` (owned by the guest) and INTRODUCEs the domain.
"""

import errno
import struct
import time

import pytest

from pyxs import Client, ConnectionError, InvalidPayload, PyXSError
from pyxs._internal import HEADER, Op, encode_frame
from pyxs.connection import XenBusConnection
from pyxs.testing import XenStoreServer

from ..support import daemons, fuse, guestring, xen

DOMID = 5
HOME = "/local/domain/%d" % DOMID


class Setup:
    """A daemon, its dom0 client and guest domain 5."""

    def __init__(self, daemon, guest, dom0):
        self.daemon = daemon
        self.kind = daemon.kind
        # The daemon whose answers are expected: the emulator models C's.
        self.model = "xenstored" if daemon.kind == "emulator" else daemon.kind
        self.guest = guest
        self.dom0 = dom0

    def client(self, **kwargs):
        kwargs.setdefault("socket_timeout", 10)
        return Client(xen_bus_path=self.guest.device, **kwargs)

    def add_guest(self, domid, tmp_path):
        """Another made-up domain on the same daemon, introduced."""
        guest = guestring.Guest(self.daemon, domid, tmp_path).start()
        self._extra.append(guest)
        self.dom0.mkdir("/local/domain/%d" % domid)
        self.dom0.set_permissions("/local/domain/%d" % domid, ["n%d" % domid])
        guest.introduce(self.dom0)
        return guest

    _extra = ()


class EmulatorGuest:
    """pyxs.testing's XenBus device for domain 5, in place of a Guest."""

    def __init__(self, tmp_path):
        self.server = XenStoreServer(xenbus_path=str(tmp_path / "xenbus"), xenbus_domid=DOMID)
        self.device = self.server.xenbus_path

    def introduce(self, dom0):
        pass  # the emulator's device domain is introduced from the start

    def stop(self):
        self.server.stop()


def _emulated(tmp_path):
    guest = EmulatorGuest(tmp_path)
    guest.server.start()
    guest.server.alive = lambda: guest.server.running
    guest.server.log_tail = lambda: "(the emulator's thread stopped)"
    yield from _setup(guest.server, guest)


def _real(kind, start_daemon, tmp_path):
    xen.require(fuse.check)
    daemon = start_daemon(kind)
    yield from _setup(daemon, guestring.Guest(daemon, DOMID, tmp_path).start())


@pytest.fixture(params=daemons.KINDS + ("emulator",))
def setup(request, start_daemon, tmp_path):
    """Domain 5 on each real daemon and on the emulator's XenBus device."""
    if request.param == "emulator":
        yield from _emulated(tmp_path)
    else:
        yield from _real(request.param, start_daemon, tmp_path)


@pytest.fixture(params=daemons.KINDS)
def real(request, start_daemon, tmp_path):
    """Domain 5 on each real daemon (for what needs the ring itself)."""
    yield from _real(request.param, start_daemon, tmp_path)


def _setup(daemon, guest):
    dom0 = Client(unix_socket_path=daemon.socket_path, socket_timeout=10)
    s = Setup(daemon, guest, dom0)
    s._extra = []
    try:
        dom0.connect()
        dom0.mkdir(HOME)
        dom0.set_permissions(HOME, ["n%d" % DOMID])
        guest.introduce(dom0)
        yield s
        survived = daemon.alive()
    finally:
        dom0.close()
        for g in [guest] + s._extra:
            g.stop()
    assert survived, daemon.log_tail()


def test_relative_paths_and_domain_path(setup):
    with setup.client() as c:
        c.write("data/host", "web")
        assert c.read("data/host") == "web"
        assert c.ls("data") == ["host"]
        assert c.ls(HOME) == ["data"]
        assert c.get_domain_path(DOMID) == HOME
        assert c.get_domain_path(7) == "/local/domain/7"
    assert setup.dom0.read(HOME + "/data/host") == "web"


def test_a_new_node_is_owned_by_the_guest_and_inherits_the_acl(setup):
    setup.dom0.set_permissions(HOME, ["n%d" % DOMID, "r0", "w3"])
    with setup.client() as c:
        c.write("owned", "x")
        assert c.get_permissions("owned") == ["n5", "r0", "w3"]


def test_permission_rules(setup):
    d = setup.dom0
    d.write("/secret", "s")                       # default n0: dom0 only
    d.write("/public", "p")
    d.set_permissions("/public", ["n0", "r5"])    # readable by 5
    d.write("/shared", "v")
    d.set_permissions("/shared", ["r0", "b5"])    # default letter r, 5 may both
    d.write("/open", "o")
    d.set_permissions("/open", ["r0"])           # default letter r for everyone
    with setup.client() as c:
        for call in (lambda: c.read("/secret"), lambda: c.write("/secret", "x"),
                     lambda: c.write("/public", "x"), lambda: c.write("/open", "x"),
                     lambda: c.set_permissions("/shared", ["n5"]),
                     lambda: c.introduce_domain(9, 1, 1)):
            with pytest.raises(PyXSError) as info:
                call()
            assert info.value.errno == errno.EACCES
        assert c.read("/public") == "p"
        assert c.read("/open") == "o"
        c.write("/shared", "w")
        assert c.read("/shared") == "w"
        # The owner may change the ACL and default letter, but not give
        # the node away: a new owner is EPERM.
        c.write("mine", "m")
        c.set_permissions("mine", ["r5", "w0"])
        assert c.get_permissions("mine") == ["r5", "w0"]
        with pytest.raises(PyXSError) as info:
            c.set_permissions("mine", ["n0", "r5"])
        # C says EPERM, oxenstored EACCES.
        assert info.value.errno == {"xenstored": errno.EPERM,
                                    "oxenstored": errno.EACCES}[setup.model]
    assert d.get_permissions(HOME + "/mine") == ["r5", "w0"]
    assert d.get_permissions("/shared") == ["r0", "b5"]


def test_the_watch_filter(setup):
    d = setup.dom0
    d.write("/hidden/node", "1")
    d.write("/seen/node", "1")
    d.set_permissions("/seen", ["n0", "r5"])
    d.set_permissions("/seen/node", ["n0", "r5"])
    with setup.client() as c, c.monitor() as m:
        m.watch("/hidden", "h")
        m.watch("/seen", "s")
        initial = {m.wait(timeout=5), m.wait(timeout=5)}
        # The initial event comes whatever the permissions.
        assert {(e.path, e.token) for e in initial} == {("/hidden", "h"), ("/seen", "s")}
        d.write("/hidden/node", "2")
        d.write("/seen/node", "2")
        event = m.wait(timeout=5)
        assert (event.path, event.token) == ("/seen/node", "s")
        assert m.wait(timeout=0.5) is None


def test_client_and_monitor_on_one_device_are_separate_conversations(setup):
    with setup.client() as c, c.monitor() as m:
        m.watch("a", "t")
        assert m.wait(timeout=5).path == "a"
        for value in ("1", "2", "3"):
            c.write("a", value)
            assert c.read("a") == value
            assert m.wait(timeout=5).path == "a"
        assert m.wait(timeout=0.5) is None


def test_device_rules_per_open(setup):
    with setup.client() as c:
        with c.monitor() as m:
            # The same watch twice on one open: two watches, two events.
            m.watch("x", "t")
            m.watch("x", "t")
            assert [m.wait(timeout=5).path for _ in range(2)] == ["x", "x"]
            c.write("x", "1")
            assert [m.wait(timeout=5).path for _ in range(2)] == ["x", "x"]
            # UNWATCH of something never watched: OK from the kernel.
            m.unwatch("never", "watched")
        # A transaction started on one open is unknown to another.
        other = setup.client()
        try:
            tx_id = c.transaction_start()
            c.write("t", "1")
            with pytest.raises(PyXSError) as info:
                other._channel.call(realdaemons_op("READ"), b"t\0", tx_id=tx_id)
            assert info.value.errno == errno.ENOENT
            c.transaction_end(commit=True)
        finally:
            other.close()


def realdaemons_op(name):
    from pyxs._internal import Op
    return Op[name]


def test_batched_requests_reach_the_daemon_one_message_per_write(setup):
    with setup.client() as c:
        for i in range(40):
            c.write("many/%d" % i, str(i))
        assert c.read_many(["many/%d" % i for i in range(40)]) == [str(i) for i in range(40)]
        assert sorted(p for p, _, _ in c.walk("many")) == sorted(
            ["many"] + ["many/%d" % i for i in range(40)])


def test_a_message_over_the_devices_buffer_is_refused_before_it_is_sent(setup):
    # Linux's device holds 4096 bytes, header included: a longer message
    # would fail the write() (EINVAL).  pyxs refuses it first, keeping
    # the connection.
    with setup.client() as c:
        c.write("small", "x")
        fd = c.connection.fd
        with pytest.raises(InvalidPayload, match="over the limit of 4080"):
            c.write("big", "x" * (4096 - 16 - len("big\0") + 1))
        # A message that just fits reaches the daemon, whose quota on a
        # guest's values refuses it: an error reply, not a broken write.
        with pytest.raises(PyXSError) as info:
            c.write("big", "x" * (4096 - 16 - len("big\0")))
        assert not isinstance(info.value, (InvalidPayload, ConnectionError))
        assert info.value.errno in (errno.ENOSPC, errno.E2BIG)
        assert c.read("small") == "x"
        assert c.connection.fd == fd


def test_transactions_and_conflicts(setup):
    with setup.client() as c, setup.client() as other:
        with c.transaction():
            c.write("t/a", "1")
            c.write("t/b", "2")
        assert other.read("t/a") == "1"
        c.transaction_start()
        c.read("t/a")
        other.write("t/a", "changed")
        c.write("t/b", "3")
        with pytest.raises(PyXSError) as info:
            c.transaction_end(commit=True)
        assert info.value.errno == errno.EAGAIN
        assert other.read("t/b") == "2"


def test_quota_errors(setup):
    # Both daemons let a domain hold 11 transactions (C: "more than 10" is
    # refused), counted over all opens of the device: they share one ring.
    clients = [setup.client() for _ in range(12)]
    try:
        for k in clients[:11]:
            k.transaction_start()
        with pytest.raises(PyXSError) as info:
            clients[11].transaction_start()
        assert info.value.errno == errno.ENOSPC
    finally:
        for k in clients:
            k.close()
    with setup.client() as c:
        c.write("v", "x" * 2000)
        if setup.model == "xenstored":
            # C limits the whole node record (value, name, permissions).
            with pytest.raises(PyXSError) as info:
                c.write("v", "x" * 2030)
            assert info.value.errno == errno.ENOSPC
        else:
            # oxenstored limits the value alone, to 2048 bytes.
            c.write("v", "x" * 2048)
            with pytest.raises(PyXSError) as info:
                c.write("v", "x" * 2049)
            assert info.value.errno == errno.E2BIG


def test_watch_quota_fails_the_write(setup):
    with setup.client() as c, c.monitor() as m:
        count = 0
        with pytest.raises(PyXSError) as info:
            for count in range(200):
                m.watch("w%d" % count, "t")
        print("%s: watches accepted: %d (%s)" % (setup.kind, count, info.value))
        assert count == {"xenstored": 129, "oxenstored": 101}[setup.model]
        # The device fails the write() with the daemon's error (Linux reads
        # an error name it does not know, oxenstored's, as EINVAL), and
        # drops that message only: pyxs raises the error for that watch
        # and keeps the connection and the other watches.
        assert not isinstance(info.value, ConnectionError)
        assert info.value.errno == {"xenstored": errno.E2BIG,
                                    "oxenstored": errno.EINVAL}[setup.model]
        fd = m.connection.fd
        m.unwatch("w0", "t")
        c.write("w5/sub", "changed")
        deadline = time.monotonic() + 10
        event = None
        while event != ("w5/sub", "t"):
            event = m.wait(timeout=max(deadline - time.monotonic(), 0))
            assert event is not None, "the watches stopped delivering"
        assert m.connection.fd == fd


def test_node_quota(setup):
    # Spread out: a parent's record lists its children's names, and a
    # record over 2048 bytes is ENOSPC of its own (at about 530 children).
    with setup.client() as c:
        made = 0
        with pytest.raises(PyXSError) as info:
            for made in range(1100):
                c.write("n/%d/%d" % (made // 40, made % 40), "")
        assert info.value.errno == errno.ENOSPC
    print("nodes made before ENOSPC:", made)
    assert 900 <= made <= 1000, made


def test_outstanding_requests_quota(real):
    """C xenstored stops reading a domain's requests while 20 of its
    replies wait to be written; oxenstored has no such quota."""
    setup = real
    setup.dom0.write(HOME + "/big", "x" * 1000)  # each reply fills the ring
    request = struct.pack("=IIII", 2, 1000, 0, 4) + b"big\0"
    count = guestring.RING_SIZE // len(request)
    words = setup.guest.words
    try:
        start = words[guestring.REQ_CONS]
        setup.guest.pause()
        try:
            for _ in range(count):
                setup.guest.put_request(request)
            setup.guest.notify()
            expected = {"xenstored": 21, "oxenstored": count}[setup.kind]
            deadline = time.monotonic() + 10
            while (words[guestring.REQ_CONS] - start) // len(request) < expected \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # and no further
            assert (words[guestring.REQ_CONS] - start) // len(request) == expected
            assert setup.dom0.read(HOME + "/big") == "x" * 1000  # dom0 unaffected
        finally:
            setup.guest.resume()
        # Once the guest reads its replies, the daemon reads the rest.
        deadline = time.monotonic() + 10
        while words[guestring.REQ_CONS] - start < count * len(request) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert words[guestring.REQ_CONS] - start == count * len(request)
    finally:
        words.release()
    with setup.client() as c:
        assert c.read("big") == "x" * 1000


def test_introduce_and_release_fire_the_special_watches(real, tmp_path):
    setup = real
    d = setup.dom0
    with d.monitor() as m:
        m.watch("@introduceDomain", "i")
        m.watch("@releaseDomain", "r")
        assert {m.wait(timeout=5).token, m.wait(timeout=5).token} == {"i", "r"}
        other = setup.add_guest(8, tmp_path)
        assert m.wait(timeout=5) == ("@introduceDomain", "i")
        other.set_dying()
        assert m.wait(timeout=10) == ("@releaseDomain", "r")
        deadline = time.monotonic() + 10
        while d.is_domain_introduced(8) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not d.is_domain_introduced(8)
        # Its nodes went with it.
        with pytest.raises(PyXSError) as info:
            d.read("/local/domain/8")
        assert info.value.errno == errno.ENOENT
        d.release_domain(DOMID)
        assert m.wait(timeout=10) == ("@releaseDomain", "r")


def test_what_a_guest_sees_when_dom0_releases_it(setup):
    c = setup.client(socket_timeout=2)
    c.write("before", "1")
    setup.dom0.release_domain(DOMID)
    assert not setup.dom0.is_domain_introduced(DOMID)
    # The daemon stops serving the ring: requests go unanswered.
    with pytest.raises(ConnectionError):
        c.read("before")
    c.close()
    # The nodes the domain owned went with it.
    with pytest.raises(PyXSError) as info:
        setup.dom0.read(HOME + "/before")
    assert info.value.errno == errno.ENOENT


def test_bad_ring_indexes_end_only_that_domains_conversation(real, tmp_path):
    setup = real
    other = setup.add_guest(9, tmp_path)
    with setup.client() as c:
        c.write("ok", "1")
        words = setup.guest.words
        try:
            words[guestring.REQ_PROD] = (words[guestring.REQ_CONS] + 4000) & 0xFFFFFFFF
        finally:
            words.release()
        setup.guest.notify()
        c.connection.timeout = 2
        with pytest.raises(ConnectionError):
            c.read("ok")
    assert setup.dom0.read(HOME + "/ok") == "1"
    with Client(xen_bus_path=other.device, socket_timeout=10) as c9:
        c9.write("alive", "yes")
        assert c9.read("alive") == "yes"
    assert setup.daemon.alive()


def test_an_oversized_message_ends_only_that_domains_conversation(real, tmp_path):
    setup = real
    other = setup.add_guest(9, tmp_path)
    with setup.client() as c:
        c.write("ok", "1")
        # The kernel is idle: nothing of its own is on the ring.
        setup.guest.put_request(struct.pack("=IIII", 2, 77, 0, 5000))  # READ, 5000 bytes
        setup.guest.notify()
        c.connection.timeout = 2
        with pytest.raises(ConnectionError):
            c.read("ok")
    with Client(xen_bus_path=other.device, socket_timeout=10) as c9:
        c9.write("alive", "yes")
        assert c9.read("alive") == "yes"
    assert setup.dom0.read(HOME + "/ok") == "1"
    assert setup.daemon.alive()


def test_compat_xs_as_the_guest(setup, monkeypatch):
    from pyxs import _compat
    monkeypatch.setenv("XENSTORED_PATH", setup.guest.device)
    handle = _compat.xs()
    try:
        handle.write("", "compat", b"value")
        assert handle.read("", "compat") == b"value"
        assert handle.get_domain_path(DOMID) == HOME
        with pytest.raises(_compat.Error) as info:
            handle.read("", "/tool")
        assert info.value.args[0] == errno.EACCES
        handle.watch("compat", "tok")
        assert list(handle.read_watch()) == ["compat", "tok"]
    finally:
        handle.close()


def test_xenbus_connection_directly(setup):
    conn = XenBusConnection(setup.guest.device)
    conn.connect()
    try:
        conn.send(encode_frame(Op.GET_DOMAIN_PATH, 41, 0, b"5\0"), 5)
        data = b""
        deadline = time.monotonic() + 5
        while len(data) < 16 + len(HOME) + 1 and time.monotonic() < deadline:
            data += conn.read()
            time.sleep(0.01)
        assert HEADER.unpack_from(data) == (Op.GET_DOMAIN_PATH, 41, 0, len(HOME) + 1)
        assert data[16:] == HOME.encode() + b"\0"
    finally:
        conn.close()
