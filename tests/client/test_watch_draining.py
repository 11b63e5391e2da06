"""Watches that never stall XenStore and never lose an event.

A connection with watches is read by pyxs as events come, whether or
not the program waits for them (otherwise oxenstored stops serving the
writers and drops events); watches survive a daemon restart; a fork
gives the child a connection of its own; and ``Client.wait_for``.
Each runs on both real daemons and on the emulator.
"""

import logging
import os
import threading
import time
import uuid
import warnings

import pytest

from pyxs import Client, Event
from pyxs.exceptions import ConnectionError, EventsDropped, PyXSError

from pyxs.testing import XenStoreServer

from ..support import daemons, xen
from ..support.commands import run_program
from ..support.threads import InThread
from .helpers import until

#: Writes in a burst, as the issue that asked for draining measured it.
#: Each to a node of its own: C xenstored 4.17 drops an event identical to
#: one it still holds for the same connection (XSA-326), so rewriting a few
#: nodes would lose events in the daemon whenever the receiver lags.
BURST = 20000

#: A write slower than this was held up by the daemon.  Stalled writes
#: wait until the watcher reads (for ever, here); a write normally takes
#: well under a millisecond, so this only allows for a loaded machine.
STALL = 5.0


class Worker(InThread):
    patience = 120.0


def _writer(socket_path, paths):
    """Write each path once; return the slowest write's duration."""
    worst = 0.0
    with Client(unix_socket_path=socket_path, socket_timeout=30) as writer:
        for path in paths:
            start = time.monotonic()
            writer.write(path, "v")
            worst = max(worst, time.monotonic() - start)
    return worst


def _take(waiter, count):
    """The next *count* events of *waiter* (a Monitor or a Client)."""
    events = []
    for _ in range(count):
        event = waiter.wait(timeout=30)
        assert event is not None, "no event %d of %d within 30s" % (len(events), count)
        events.append(event)
    return events


def _remove(socket_path, root):
    """Remove a large subtree (the fixture's own clean-up allows 5 s)."""
    with Client(unix_socket_path=socket_path, socket_timeout=120) as c:
        c.rm(root)


def test_unread_monitor_never_slows_a_writer(xenstore, client, root):
    paths = ["%s/%d" % (root, i) for i in range(BURST)]
    with client.monitor() as monitor:
        monitor.watch(root, "burst")
        # Nobody waits on the monitor while the other client writes.
        worst = Worker(_writer, xenstore.socket_path, paths).value()
        assert worst < STALL, "a write took %.2fs while a watcher slept" % worst
        events = _take(monitor, BURST + 1)
    _remove(xenstore.socket_path, root)
    assert events[0] == Event(root, "burst")
    assert [e.path for e in events[1:]] == paths
    assert {e.token for e in events} == {"burst"}


def test_unread_watch_on_a_busy_client_never_slows_a_writer(xenstore, client, root):
    """The watch is on a client that keeps calling meanwhile: its calls
    are answered, and none of the events is lost."""
    paths = ["%s/w/%d" % (root, i) for i in range(BURST)]
    client.write(root + "/mine", "0")
    client.watch(root + "/w", "own")
    writer = Worker(_writer, xenstore.socket_path, paths)
    calls = 0
    while not writer.done:
        assert client.read(root + "/mine") == "0"
        calls += 1
    worst = writer.value()
    assert worst < STALL, "a write took %.2fs while a watcher was busy" % worst
    assert calls > 0
    events = _take(client, BURST + 1)
    client.unwatch(root + "/w", "own")
    _remove(xenstore.socket_path, root)
    assert events[0] == Event(root + "/w", "own")
    assert [e.path for e in events[1:]] == paths


def test_bounded_queue_says_how_many_were_dropped(client, root):
    limit, writes = 100, 500
    with client.monitor(max_queued_events=limit) as monitor:
        monitor.watch(root, "b")
        for i in range(writes):
            client.write("%s/%d" % (root, i), "v")
        client.write(root + "/last", "v")
        # Nobody reads, so the drainer takes the events and must drop some;
        # give it the time it needs on a loaded machine before reading.
        deadline = time.monotonic() + 30
        while monitor._channel.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        delivered, dropped, errors = [], 0, 0
        while not delivered or delivered[-1].path != root + "/last":
            try:
                event = monitor.wait(timeout=10)
            except EventsDropped as e:
                assert e.limit == limit and e.count > 0
                assert "%d watch event" % e.count in str(e)
                dropped += e.count
                errors += 1
                continue
            assert event is not None, "the last event never came"
            if event.path == root + "/last" and dropped == 0:
                pytest.fail("%d events in a queue of %d, none dropped" % (writes, limit))
            delivered.append(event)
            if dropped + len(delivered) == writes + 2:
                break
    assert errors >= 1
    # Nothing vanished silently: each event was delivered or counted.
    assert dropped + len(delivered) == writes + 2
    assert delivered[0] == Event(root, "b")
    numbers = [int(e.path.rsplit("/", 1)[1]) for e in delivered[1:] if e.path != root + "/last"]
    assert numbers == sorted(numbers)


def test_max_queued_events_must_be_positive():
    for bad in (0, -1):
        with pytest.raises(ValueError) as refused:
            Client(unix_socket_path="/nonexistent", max_queued_events=bad)
        assert str(refused.value) == "max_queued_events must be at least 1, not %d" % bad
    one = Client(unix_socket_path="/nonexistent", max_queued_events=1)
    assert one._channel.max_queued_events == 1


# Removing watches.

def test_unwatch_filters_the_events_the_drainer_queued(client, root):
    """Events already taken from XenStore when a watch is removed: those
    it saw go, those of the same token on another path stay."""
    with client.monitor() as monitor:
        monitor.watch(root + "/a", "same")
        monitor.watch(root + "/b", "same")
        assert _take(monitor, 2) == [Event(root + "/a", "same"), Event(root + "/b", "same")]
        client.write(root + "/a/1", "x")
        client.write(root + "/b/1", "y")
        until(lambda: len(monitor._channel.events) == 2, "the drainer queueing both events")
        monitor.unwatch(root + "/a", "same")
        assert _take(monitor, 1) == [Event(root + "/b/1", "same")]
        assert monitor.wait(timeout=0.2) is None


def test_the_drainer_goes_with_the_last_watch_even_while_a_thread_waits(client, root):
    """The drainer parks while a thread waits for events; removing the
    last watch from another thread ends it at once, not when the waiting
    thread gives up."""
    with client.monitor() as monitor:
        monitor.watch(root, "w")
        assert _take(monitor, 1) == [Event(root, "w")]
        drainer = monitor._channel._drainer
        assert drainer is not None and drainer.is_alive()
        waiter = Worker(lambda: monitor.wait(timeout=60))
        until(lambda: monitor._channel._drainer_parked, "the drainer parking")
        monitor.unwatch(root, "w")
        drainer.join(timeout=30)
        assert not drainer.is_alive(), "the drainer outlived the last watch"
        assert waiter.finished_at is None, "the waiter gave up first"
        monitor.close()
        error = waiter.outcome()[1]
        assert isinstance(error, ConnectionError)
        assert str(error) == "the connection to %r was closed" % monitor._channel.connection.path


def test_a_program_may_exit_with_a_watch_still_open(tmp_path):
    """The drainer never keeps a program alive: one that ends with a
    monitor still watching (and never closed) exits at once."""
    program = (
        "import sys, pyxs\n"
        "monitor = pyxs.Client(unix_socket_path=sys.argv[1], socket_timeout=10).monitor()\n"
        "monitor.watch('/', 't')\n"
        "assert monitor.wait(timeout=10) == ('/', 't')\n"
        "assert monitor._channel._drainer.is_alive()\n"
        "print('watching')\n")
    with XenStoreServer(socket_path=str(tmp_path / "socket")) as server:
        assert run_program(program, server.socket_path) == (0, "watching\n", "")


def test_pyxs_logs_nothing_unless_the_program_configures_logging():
    """pyxs's warnings (here: no new connection could be made) go to the
    ``pyxs`` logger only: a program that sets up no logging prints
    nothing of them."""
    program = (
        "import pyxs\n"
        "from pyxs.testing import XenStoreServer\n"
        "server = XenStoreServer().start()\n"
        "monitor = pyxs.Client(unix_socket_path=server.socket_path, socket_timeout=0.5).monitor()\n"
        "monitor.watch('/', 't')\n"
        "assert monitor.wait(timeout=10) == ('/', 't')\n"
        "server.stop()\n"
        "try:\n"
        "    monitor.wait(timeout=30)\n"
        "except pyxs.ConnectionError as e:\n"
        "    print('told:', 'no new one could be made' in str(e))\n")
    assert run_program(program) == (0, "told: True\n", "")


def test_a_waiter_times_out_while_another_thread_reads(client, root):
    """A thread whose wait() times out gets None on time, even while
    another thread, waiting longer, is the one reading the connection."""
    with client.monitor() as monitor:
        monitor.watch(root, "w")
        assert _take(monitor, 1) == [Event(root, "w")]
        patient = Worker(lambda: monitor.wait(timeout=60))
        until(lambda: monitor._channel._reader == "caller", "the patient waiter reading")
        start = time.monotonic()
        assert monitor.wait(timeout=0.2) is None
        # Generous (the other thread waits up to 60 s): only a wait that
        # outlived its timeout fails this.
        assert time.monotonic() - start < 10
        client.write(root + "/x", "1")
        assert patient.value() == Event(root + "/x", "w")


# Restarts.

class Restartable:
    """A backend of one kind, private to a test, that :meth:`restart`
    kills and starts afresh on the same socket, with an empty tree, as a
    host's XenStore comes back after a crash."""

    def __init__(self, kind, workdir):
        self.kind, self._workdir = kind, workdir
        self._backend = self._start()

    def _start(self):
        if self.kind == "emulator":
            return XenStoreServer(socket_path=str(self._workdir / "socket")).start()
        return xen.require(daemons.start, self.kind, self._workdir)

    @property
    def socket_path(self):
        return str(self._backend.socket_path)

    def restart(self):
        if self.kind == "emulator":
            self._backend.stop()
            self._backend = self._start()
        else:
            self._backend = daemons.restart(self._backend)

    def stop(self):
        self._backend.stop(timeout=2)


@pytest.fixture(params=daemons.KINDS + ("emulator",))
def restartable(request, tmp_path):
    backend = Restartable(request.param, tmp_path)
    yield backend
    backend.stop()


def test_watches_survive_a_daemon_restart(restartable, caplog):
    caplog.set_level(logging.DEBUG, logger="pyxs")
    with Client(unix_socket_path=restartable.socket_path, socket_timeout=20).monitor() as monitor:
        monitor.watch("/restart", "r")
        monitor.watch("/restart/deep", "d")
        assert _take(monitor, 2) == [Event("/restart", "r"), Event("/restart/deep", "d")]
        waiter = Worker(lambda: _take(monitor, 2))
        time.sleep(0.2)
        restartable.restart()
        # Each watch made again announces itself: the cue to read again.
        assert sorted(waiter.value()) == [Event("/restart", "r"), Event("/restart/deep", "d")]
        with Client(unix_socket_path=restartable.socket_path, socket_timeout=10) as writer:
            writer.write("/restart/deep/after", "1")
        assert sorted(_take(monitor, 2)) == [Event("/restart/deep/after", "d"),
                                             Event("/restart/deep/after", "r")]
        # The pyxs logger told the story.
        messages = [r.getMessage() for r in caplog.records if r.name == "pyxs"]
        assert any("ended" in m for m in messages), messages
        assert any("registering 2 watch(es) again" in m for m in messages), messages
        connected = "connected to %r" % restartable.socket_path
        connections = [m for m in messages if m.startswith(connected)]
        assert connections[0] == connected and connected + " again" in connections, messages


def test_watches_are_made_again_while_nobody_waits(restartable):
    """The drainer connects again and makes the watches again by itself:
    a change made after the restart, before the program waits again,
    still brings its event."""
    with Client(unix_socket_path=restartable.socket_path, socket_timeout=20).monitor() as monitor:
        monitor.watch("/quiet", "q")
        assert _take(monitor, 1) == [Event("/quiet", "q")]
        channel, generation = monitor._channel, monitor._channel.generation
        restartable.restart()
        until(lambda: channel.generation != generation and channel._state.name == "OPEN"
               and channel.awaited == 0, "connecting again")
        with Client(unix_socket_path=restartable.socket_path, socket_timeout=10) as writer:
            writer.write("/quiet/after", "1")
        assert _take(monitor, 2) == [Event("/quiet", "q"), Event("/quiet/after", "q")]


def test_own_watch_survives_a_restart_and_calls_go_on(restartable):
    with Client(unix_socket_path=restartable.socket_path, socket_timeout=20) as client:
        client.watch("/own", "o")
        assert client.wait(timeout=10) == Event("/own", "o")
        restartable.restart()
        assert client.wait(timeout=20) == Event("/own", "o")
        client.write("/own/x", "1")
        assert client.read("/own/x") == "1"
        assert client.wait(timeout=10) == Event("/own/x", "o")


def test_a_waiter_hears_of_a_lost_connection_and_the_next_wait_restores_it(tmp_path, caplog):
    """With XenStore gone for longer than the connection's timeout, a
    waiter is told; once XenStore is back, the next wait connects again
    and registers the watch again (on the emulator, which can be kept
    down)."""
    socket_path = str(tmp_path / "socket")
    server = XenStoreServer(socket_path=socket_path).start()
    try:
        with Client(unix_socket_path=socket_path, socket_timeout=1).monitor() as monitor:
            monitor.watch("/gone", "g")
            assert monitor.wait(timeout=10) == Event("/gone", "g")
            server.stop()
            # A wait shorter than the attempt to connect again ends on time.
            assert monitor.wait(timeout=0.2) is None
            with pytest.raises(ConnectionError, match="no new one could be made within 1s") as info:
                monitor.wait(timeout=30)
            # Why, as the last attempt to connect said, and in the log.
            assert "cannot connect" in str(info.value.__cause__)
            warnings = [r.getMessage() for r in caplog.records
                        if r.name == "pyxs" and r.levelno == logging.WARNING]
            assert any("no new one could be made" in m for m in warnings), warnings
            # Each wait tries again, and is told again.
            with pytest.raises(ConnectionError, match="no new one could be made within 1s"):
                monitor.wait(timeout=30)
            server = XenStoreServer(socket_path=socket_path).start()
            assert monitor.wait(timeout=30) == Event("/gone", "g")
            # Gone for less than the timeout: a later attempt succeeds.
            server.stop()
            servers = []
            back = threading.Timer(
                0.3, lambda: servers.append(XenStoreServer(socket_path=socket_path).start()))
            back.start()
            try:
                assert monitor.wait(timeout=30) == Event("/gone", "g")
            finally:
                back.join()
                server, = servers
    finally:
        server.stop()


# Forks.

def _fork(child):
    """Run *child* in a forked process; return a function that waits for
    it and gives its exit status (0: *child* returned without raising)."""
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() in a process with threads: the
        # point of these tests is that pyxs copes.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            child()
            status = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(status)

    def join(timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child hung")
    return join


def _calls(client, base, count=2000):
    for i in range(count):
        path = "%s/%d" % (base, i % 50)
        client.write(path, str(i))
        assert client.read(path) == str(i), (path, i)


def test_parent_and_child_share_nothing_after_fork(client, root):
    client.write(root + "/before", "1")  # Connected before the fork.
    join = _fork(lambda: _calls(client, root + "/child"))
    _calls(client, root + "/parent")
    assert join() == 0
    assert client.read(root + "/child/49") == "1999"


def test_the_child_closes_its_copy_of_the_parents_connection(client, root):
    """The child's copy of the parent's socket is closed at the fork (the
    parent's stays open); the child's own connection works, and fails and
    closes as any other."""
    client.write(root + "/x", "1")
    parents = client._channel.connection.fd
    socket = os.fstat(parents).st_ino

    def child():
        # The number may be reused at once (for the child's wake pipe).
        try:
            assert os.fstat(parents).st_ino != socket
        except OSError:
            pass
        assert client.read(root + "/x") == "1"
        client.close()
    assert _fork(child)() == 0
    assert client.read(root + "/x") == "1"


def test_child_starts_without_watches(client, root):
    with client.monitor() as monitor:
        monitor.watch(root, "parent")
        assert monitor.wait(timeout=10) == Event(root, "parent")

        def child():
            # No watch of the parent's reaches the child.
            client.write(root + "/from-child", "1")
            assert monitor.wait(timeout=0.5) is None
            monitor.watch(root + "/c", "child")
            assert monitor.wait(timeout=10) == Event(root + "/c", "child")
        assert _fork(child)() == 0
        # The parent's watch is intact, and saw the child's write.
        assert monitor.wait(timeout=10) == Event(root + "/from-child", "parent")
        client.write(root + "/x", "1")
        assert monitor.wait(timeout=10) == Event(root + "/x", "parent")


def test_transaction_does_not_cross_a_fork(client, root):
    with client.transaction() as t:
        t.write(root + "/tx", "parent")

        def child():
            # Refused before anything is sent: the transaction is the
            # parent's, on the parent's connection.
            with pytest.raises(ConnectionError, match="transaction was lost"):
                t.write(root + "/tx", "child")
        assert _fork(child)() == 0
    assert client.read(root + "/tx") == "parent"


def test_a_transaction_call_under_way_at_the_fork_does_not_block_the_child(client, root):
    """A thread of the parent may be starting or ending a transaction at
    the moment of the fork (holding the client's transaction lock); that
    thread does not exist in the child, which can still use
    transactions."""
    def child():
        client.transaction_start()
        client.write(root + "/forked", "child")
        client.transaction_end(commit=True)
    with client._tx_lock:  # as the parent's other thread would
        join = _fork(child)
    assert join(timeout=30) == 0
    assert client.read(root + "/forked") == "child"


# Client.wait_for.

def test_wait_for_a_value_set_later(xenstore, client, root):
    path = root + "/state"
    client.write(path, "1")

    def later():
        time.sleep(0.2)
        with Client(unix_socket_path=xenstore.socket_path) as other:
            other.write(path, "3")
            other.write(path, "4")
    setter = Worker(later)
    assert client.wait_for(path, 4, timeout=30) == "4"
    setter.value()
    assert client._channel.watches == {}


def test_wait_for_with_a_callable_and_a_missing_node(client, root):
    path = root + "/appears"
    seen = []

    def condition(value):
        seen.append(value)
        return value is not None and int(value) >= 2

    def later():
        time.sleep(0.2)
        client.write(path, "1")
        client.write(path, "2")
    setter = Worker(later)
    assert client.wait_for(path, condition, timeout=30) == "2"
    setter.value()
    assert seen[0] is None  # Missing at first: the condition saw None.

    remover = Worker(lambda: (time.sleep(0.2), client.rm(path)))
    assert client.wait_for(path, None, timeout=30) is None
    remover.value()


def test_wait_for_relative_path(xenstore, client):
    name = "pyxs-wait-for-" + uuid.uuid4().hex
    try:
        client.write(name, "ready")
        assert client.wait_for(name, "ready", timeout=10) == "ready"
    finally:
        client.rm(name)


def test_wait_for_times_out_and_leaves_the_client_usable(client, root):
    threads = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        client.wait_for(root + "/never", "x", timeout=0.3)
    assert not isinstance(info.value, PyXSError)
    assert time.monotonic() - start >= 0.3
    assert root + "/never" in str(info.value)
    client.write(root + "/after", "ok")
    assert client.read(root + "/after") == "ok"
    # No watch, no connection and no thread are left behind.
    deadline = time.monotonic() + 10
    # (Compared as sets: a thread of an earlier test may end meanwhile.)
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(threading.enumerate()) - threads


def test_wait_for_refuses_a_transaction(client, root):
    with client.transaction() as t:
        with pytest.raises(PyXSError) as info:
            t.wait_for(root, "x", timeout=1)
    assert info.value.errno == 114  # EALREADY
