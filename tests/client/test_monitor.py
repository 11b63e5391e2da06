"""Monitor and watches against the real daemons (C xenstored and
oxenstored): events, timeouts, unwatch filtering, special paths, and an
idle wait that costs nothing.

Every wait in these tests has a timeout, so a missing event fails the
test instead of hanging it; waits without a timeout run in a thread
joined with a timeout.
"""

import errno
import socket
import threading
import time

import pytest

from pyxs import Client, Event, Monitor, UnixSocketConnection, XenBusConnection
from pyxs.exceptions import PyXSError
from pyxs.testing import XenStoreServer

from ..support.fakeserver import FakeServer
from ..support.threads import InThread
from .helpers import TIMEOUT, errno_of

#: Seconds any expected event may take to arrive.
SOON = 5.0


def expect(monitor, *events, timeout=SOON):
    """The next events of *monitor* are exactly *events*."""
    got = [monitor.wait(timeout=timeout) for _ in events]
    assert got == [Event(*e) for e in events]
    for event in got:
        assert isinstance(event, Event)
        assert type(event.path) is str and type(event.token) is str


def expect_nothing(monitor, timeout=0.3):
    event = monitor.wait(timeout=timeout)
    assert event is None, "unexpected event %r" % (event,)


@pytest.fixture
def monitor(client):
    with client.monitor() as m:
        yield m


class Waiter(InThread):
    patience = SOON * 3


def assert_not_busy(waiter, seconds, what):
    """A wait that lasted *seconds* must not have polled in a loop.  The
    bound is generous, half the time waited (a busy loop burns about all
    of it): it catches spinning, it is not a speed goal."""
    assert waiter.cpu < seconds / 2, \
        "%s used %.2fs of CPU in %.1fs: does it poll in a loop?" % (what, waiter.cpu, seconds)


# Basics.

def test_client_monitor_has_its_own_connection(client, root):
    m = client.monitor()
    assert isinstance(m, Monitor)
    assert m.connection is not client.connection
    assert m.connection.path == client.connection.path
    try:
        m.watch(root, "tok")
        expect(m, (root, "tok"))
        client.write(root + "/a", "1")
        expect(m, (root + "/a", "tok"))
    finally:
        m.close()
    assert not m.connection.is_connected


def test_monitor_as_context_manager(client, root):
    with client.monitor() as m:
        assert m.connection.is_connected
        m.watch(root, "ctx")
        expect(m, (root, "ctx"))
        client.write(root + "/b", "2")
        expect(m, (root + "/b", "ctx"))
    assert not m.connection.is_connected


def test_monitor_built_from_a_connection(xenstore, client, root):
    with Monitor(UnixSocketConnection(xenstore.socket_path, 10)) as m:
        m.watch(root, "direct")
        expect(m, (root, "direct"))
        client.write(root, "x")
        expect(m, (root, "direct"))


def test_registration_event_for_missing_node(monitor, client, root):
    path = root + "/does/not/exist"
    monitor.watch(path, "reg")
    expect(monitor, (path, "reg"))
    expect_nothing(monitor)
    with pytest.raises(PyXSError):
        client.read(path)


def test_events_carry_str_and_bytes_arguments_work(monitor, client, root):
    monitor.watch(root.encode(), b"bytes-token")
    expect(monitor, (root, "bytes-token"))
    client.write(root + "/z", b"v")
    expect(monitor, (root + "/z", "bytes-token"))


def test_wait_with_timeout_returns_none(monitor, root):
    monitor.watch(root, "t")
    expect(monitor, (root, "t"))
    start = time.monotonic()
    assert monitor.wait(timeout=0.3) is None
    elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < SOON
    assert monitor.wait(timeout=0) is None


def test_old_sleep_argument_still_accepted(monitor, client, root):
    monitor.watch(root, "s")
    assert monitor.wait(sleep=0.1, timeout=SOON) == Event(root, "s")
    assert monitor.wait(0.1, timeout=0.2) is None
    client.write(root + "/later", "1")
    # Without a timeout, in a thread so that a missing event cannot hang.
    assert Waiter(monitor.wait, 0.1).value() == Event(root + "/later", "s")
    client.write(root + "/last", "2")
    assert Waiter(lambda: monitor.wait(sleep=5)).value() == Event(root + "/last", "s")


def test_iterating_a_monitor_yields_events(monitor, client, root):
    monitor.watch(root, "it")
    for i in range(3):
        client.write("%s/n%d" % (root, i), i)

    def first_four():
        got = []
        for event in monitor:
            got.append(event)
            if len(got) == 4:
                return got

    got = Waiter(first_four).value()
    assert got == [Event(root, "it")] + [Event("%s/n%d" % (root, i), "it") for i in range(3)]


def test_events_follow_writes_rm_and_permissions(monitor, client, root):
    client.write(root + "/a", "1")
    monitor.watch(root, "w")
    expect(monitor, (root, "w"))
    client.write(root + "/a", "2")
    client.set_permissions(root + "/a", ["n0", "r1"])
    client.rm(root + "/a")
    expect(monitor, (root + "/a", "w"), (root + "/a", "w"), (root + "/a", "w"))
    expect_nothing(monitor)


def test_same_watch_twice_is_eexist(monitor, root):
    monitor.watch(root, "dup")
    with pytest.raises(PyXSError) as info:
        monitor.watch(root, "dup")
    assert info.value.errno == 17  # EEXIST


def test_unwatch_unknown_is_enoent(monitor, root):
    with pytest.raises(PyXSError) as info:
        monitor.unwatch(root, "never")
    assert info.value.errno == 2  # ENOENT


# Unwatch.

def test_unwatch_stops_future_events(monitor, client, root):
    monitor.watch(root, "u")
    expect(monitor, (root, "u"))
    monitor.unwatch(root, "u")
    client.write(root + "/after", "1")
    expect_nothing(monitor)


def test_unwatch_drops_events_already_queued(monitor, client, root):
    """Events the daemon sent before the UNWATCH reply are in the
    monitor's queue by the time unwatch() returns: none may come out."""
    monitor.watch(root + "/gone", "tok")
    monitor.watch(root + "/kept", "tok")
    monitor.watch(root + "/gone", "other")
    expect(monitor, (root + "/gone", "tok"), (root + "/kept", "tok"),
           (root + "/gone", "other"))
    for i in range(100):
        client.write("%s/gone/%d" % (root, i), i)
    client.write(root + "/kept/x", "k")
    # Every write has returned, so the daemon has sent every event before
    # it answers the UNWATCH below.
    monitor.unwatch(root + "/gone", "tok")
    got = []
    while True:
        event = monitor.wait(timeout=0.5)
        if event is None:
            break
        got.append(event)
    assert Event(root + "/kept/x", "tok") in got
    leaked = [e for e in got if e.token == "tok" and e.path.startswith(root + "/gone")]
    assert not leaked, "%d events of a removed watch came out, e.g. %r" % (len(leaked),
                                                                         leaked[:3])
    # The other token's watch on the same path keeps all of its events.
    assert [e for e in got if e.token == "other"] == [
        Event("%s/gone/%d" % (root, i), "other") for i in range(100)]


def watch_two_paths_then_write_under_each(monitor, client, root, token):
    """Watch ``root/a`` and ``root/b`` with the one *token* (taking the
    two events that confirm the watches), then write a child of each."""
    monitor.watch(root + "/a", token)
    monitor.watch(root + "/b", token)
    expect(monitor, (root + "/a", token), (root + "/b", token))
    client.write(root + "/a/1", "x")
    client.write(root + "/b/1", "y")


def test_unwatch_keeps_queued_events_of_same_token_elsewhere(monitor, client, root):
    watch_two_paths_then_write_under_each(monitor, client, root, "same")
    monitor.unwatch(root + "/a", "same")
    expect(monitor, (root + "/b/1", "same"))
    expect_nothing(monitor)


def test_one_token_on_two_paths_delivers_each_event_once(monitor, client, root):
    watch_two_paths_then_write_under_each(monitor, client, root, "shared")
    client.write(root + "/elsewhere", "3")
    expect(monitor, (root + "/a/1", "shared"), (root + "/b/1", "shared"))
    expect_nothing(monitor)


# Special paths.

@pytest.mark.parametrize("special", ["@introduceDomain", "@releaseDomain"])
def test_special_paths_can_be_watched(monitor, special):
    monitor.watch(special, "dom")
    expect(monitor, (special, "dom"))
    monitor.unwatch(special, "dom")


# Client.watch and wait.

def test_client_watch_and_wait_as_in_the_tutorial(client, root):
    client.watch(root, "tutorial")
    assert client.wait(timeout=SOON) == Event(root, "tutorial")
    client.write(root + "/x", "1")
    assert client.read(root + "/x") == "1"
    event = client.wait(timeout=SOON)
    assert event == Event(root + "/x", "tutorial")
    assert event.path == root + "/x" and event.token == "tutorial"
    assert client.wait(timeout=0.2) is None
    client.unwatch(root, "tutorial")
    client.write(root + "/y", "2")
    assert client.wait(timeout=0.3) is None


def test_client_wait_in_a_thread_while_the_same_client_writes(client, root):
    client.watch(root, "shared")
    assert client.wait(timeout=SOON) == Event(root, "shared")
    waiter = Waiter(client.wait)
    time.sleep(0.1)
    for i in range(5):
        client.write("%s/%d" % (root, i), i)
    assert waiter.value() == Event(root + "/0", "shared")
    for i in range(1, 5):
        assert client.wait(timeout=SOON) == Event("%s/%d" % (root, i), "shared")


# Idle wait is free.

class CountingProxy(FakeServer):
    """A Unix-socket proxy to *target* that counts the bytes each way."""

    def __init__(self, path, target):
        self.target = target
        self.up = 0      # client -> daemon
        self.down = 0    # daemon -> client
        self._count_lock = threading.Lock()
        super().__init__(path, self._relay)

    def _relay(self, near, _index):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as far:
            far.connect(self.target)
            upward = self.spawn(self._pump, near, far, "up")
            self._pump(far, near, "down")
            upward.join()

    def _pump(self, src, dst, way):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._count_lock:
                    setattr(self, way, getattr(self, way) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.fixture
def proxy(xenstore, tmp_path):
    p = CountingProxy(tmp_path / "proxy.sock", xenstore.socket_path)
    yield p
    p.close()


def test_unread_watch_sends_nothing_and_uses_no_cpu(proxy, client, root):
    """Nobody waits: the thread that drains the connection sleeps too."""
    monitor = Monitor(UnixSocketConnection(proxy.path, 10))
    try:
        monitor.watch(root, "unread")
        expect(monitor, (root, "unread"))
        sent = proxy.up
        cpu = time.process_time()
        time.sleep(1.5)
        used = time.process_time() - cpu
        # Generous, against a drainer that spins; not a speed goal.
        assert used < 1.5 / 2, "an unread watch used %.2fs of CPU in 1.5s" % used
        assert proxy.up == sent, "an unread watch sent %d bytes" % (proxy.up - sent)
        client.write(root + "/x", "1")
        expect(monitor, (root + "/x", "unread"))
    finally:
        monitor.close()


def test_idle_wait_sends_nothing_and_does_not_spin(proxy, client, root, record_property):
    monitor = Monitor(UnixSocketConnection(proxy.path, 10))
    try:
        monitor.watch(root, "idle")
        expect(monitor, (root, "idle"))
        sent = proxy.up
        assert sent > 0

        # A wait with a timeout and nothing to report.
        idle = Waiter(monitor.wait, None, 1.5)
        assert idle.value() is None
        assert_not_busy(idle, 1.5, "wait(timeout=1.5)")

        # A wait without a timeout, woken after a while by a real event.
        woken = Waiter(monitor.wait)
        time.sleep(1.5)
        assert proxy.up == sent, "an idle wait sent %d bytes" % (proxy.up - sent)
        client.write(root + "/wake", "up")
        assert woken.value() == Event(root + "/wake", "idle")
        assert_not_busy(woken, 1.5, "wait()")
        assert proxy.up == sent, "waiting sent %d bytes to the daemon" % (proxy.up - sent)
        record_property("idle_wait_cpu_s", max(idle.cpu, woken.cpu))
        print("idle wait CPU: %.4fs over 1.5s (timeout), %.4fs over 1.5s (woken)"
              % (idle.cpu, woken.cpu))
    finally:
        monitor.close()


def test_idle_client_wait_sends_nothing(proxy, xenstore, root):
    """The same through Client.watch/Client.wait, where the waiting
    client is also the one that can make calls."""
    with Client(unix_socket_path=proxy.path, socket_timeout=10) as c:
        c.watch(root, "cw")
        assert c.wait(timeout=SOON) == Event(root, "cw")
        sent = proxy.up
        idle = Waiter(c.wait, None, 1.0)
        assert idle.value() is None
        assert_not_busy(idle, 1.0, "Client.wait(timeout=1.0)")
        assert proxy.up == sent


# Over XenBus.

def test_monitor_over_xenbus_device(tmp_path):
    """A Monitor over a XenBusConnection, with pyxs.testing's emulator
    offering a pseudo-terminal as the XenBus device."""
    with XenStoreServer(str(tmp_path / "emu.sock"), pty=True) as server:
        assert server.pty_path
        monitor = Monitor(XenBusConnection(server.pty_path, 10))
        try:
            with Client(unix_socket_path=server.socket_path, socket_timeout=10) as c:
                monitor.watch("/bus", "xb")
                expect(monitor, ("/bus", "xb"))
                c.write("/bus/node", "1")
                expect(monitor, ("/bus/node", "xb"))
                assert monitor.wait(timeout=0.3) is None
                woken = Waiter(monitor.wait)
                time.sleep(0.5)
                c.write("/bus/other", "2")
                assert woken.value() == Event("/bus/other", "xb")
                assert_not_busy(woken, 0.5, "wait() over XenBus")
                monitor.unwatch("/bus", "xb")
                c.write("/bus/third", "3")
                expect_nothing(monitor)
        finally:
            monitor.close()


# Monitor, watch, wait and unwatch together.

def test_monitor_watch_wait_unwatch(client, root):
    client.mkdir(root)
    m = client.monitor()
    assert isinstance(m, Monitor)
    with m:
        m.watch(root, "tok")
        assert m.wait(timeout=TIMEOUT) == Event(root, "tok")     # fired on registration
        client.write(root + "/w", "v")
        assert m.wait(timeout=TIMEOUT) == Event(root + "/w", "tok")
        m.unwatch(root, "tok")
        with pytest.raises(PyXSError) as info:
            m.unwatch(root, "tok")
        assert errno_of(info) == errno.ENOENT


def test_monitor_sees_commits_only(client, root):
    client.mkdir(root)
    with client.monitor() as m:
        m.watch(root + "/tx", "t")
        assert m.wait(timeout=TIMEOUT) == Event(root + "/tx", "t")
        with client.transaction() as t:
            t.write(root + "/tx", "v")
            assert m.wait(timeout=0.3) is None
        assert m.wait(timeout=TIMEOUT) == Event(root + "/tx", "t")
