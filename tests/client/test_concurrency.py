"""Concurrency against both real daemons: floods of events, threads
sharing one client, rival transactions, and daemons that die or stop.

Every thread is joined with a timeout, so a hang fails the test rather
than stalling the run.
"""

import errno
import random
import signal
import threading
import time

import pytest

from pyxs import Client, Event
from pyxs.exceptions import ConnectionError, PyXSError, Timeout

from ..support import daemons
from ..support.threads import InThread

#: Seconds a thread may take before it counts as hung.
HANG = 30.0


class Worker(InThread):
    patience = HANG


# An event flood.

EVENTS = 10000


def test_ten_thousand_events_arrive_in_order(client, root):
    def path(i):
        return "%s/%d/%d" % (root, i // 100, i)

    with client.monitor() as monitor:
        monitor.watch(root, "flood")

        def consume():
            events = []
            while len(events) < EVENTS + 1:
                event = monitor.wait(timeout=10)
                if event is None:
                    break
                events.append(event)
            return events

        consumer = Worker(consume)
        start = time.monotonic()
        for i in range(EVENTS):
            client.write(path(i), i)
        written = time.monotonic()
        events = consumer.value()
        done = time.monotonic()
        assert len(events) == EVENTS + 1, "%d events of %d" % (len(events), EVENTS + 1)
        assert events[0] == Event(root, "flood")
        wrong = [(i, e) for i, e in enumerate(events[1:]) if e != Event(path(i), "flood")]
        assert not wrong, "events out of order or wrong, first: %r" % (wrong[:3],)
        assert monitor.wait(timeout=0.2) is None
    print("%d writes in %.2fs, all events in %.2fs (%.0f events/s)"
          % (EVENTS, written - start, done - start, EVENTS / (done - start)))


def test_events_on_the_writers_own_connection(client, root):
    """The same flood with the watch on the writing client itself:
    events interleave with replies on one connection."""
    count = 2000
    client.watch(root, "own")
    assert client.wait(timeout=5) == Event(root, "own")
    for i in range(count):
        client.write("%s/%d" % (root, i), i)
    for i in range(count):
        assert client.wait(timeout=5) == Event("%s/%d" % (root, i), "own")
    assert client.wait(timeout=0.2) is None
    client.unwatch(root, "own")


# Many threads on one client.

THREADS = 8
OPERATIONS = 2000


def _mixed_operations(client, base, seed):
    """OPERATIONS random operations on *base*'s subtree, each reply
    checked against a model of the subtree."""
    rng = random.Random(seed)
    model = {base: ""}

    def ensure_parents(path):
        parent = path.rsplit("/", 1)[0]
        while parent not in model:
            model[parent] = ""
            parent = parent.rsplit("/", 1)[0]

    def children(path):
        prefix = path + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in model if p.startswith(prefix)})

    for i in range(OPERATIONS):
        path = base + "/a%d" % rng.randrange(5)
        if rng.random() < 0.5:
            path += "/b%d" % rng.randrange(4)
        op = rng.choice(("write", "write", "read", "read", "ls", "mkdir", "rm"))
        if op == "rm" and path not in model:
            op = "write"
        if op == "write":
            value = "%s#%d" % (seed, i)
            client.write(path, value)
            ensure_parents(path)
            model[path] = value
        elif op == "mkdir":
            client.mkdir(path)
            ensure_parents(path)
            model.setdefault(path, "")
        elif op == "rm":
            client.rm(path)
            for p in [p for p in model if p == path or p.startswith(path + "/")]:
                del model[p]
        elif op == "read":
            if path in model:
                got = client.read(path)
                assert got == model[path], "read %s: %r, expected %r" % (path, got, model[path])
            else:
                with pytest.raises(PyXSError) as info:
                    client.read(path)
                assert info.value.errno == errno.ENOENT
        else:
            path = path.rsplit("/", 1)[0] if "/b" in path[len(base):] else path
            if path in model:
                got = sorted(client.ls(path))
                assert got == children(path), "ls %s: %r, expected %r" % (
                    path, got, children(path))
            else:
                with pytest.raises(PyXSError) as info:
                    client.ls(path)
                assert info.value.errno == errno.ENOENT
    # The daemon ends up holding exactly the model.
    for path, value in model.items():
        assert client.read(path) == value
    return len(model)


def test_threads_sharing_one_client_get_their_own_replies(client, root):
    bases = ["%s/t%d" % (root, n) for n in range(THREADS)]
    for base in bases:
        client.mkdir(base)
    start = time.monotonic()
    workers = [Worker(_mixed_operations, client, base, n) for n, base in enumerate(bases)]
    for worker in workers:
        worker.value(timeout=120)
    elapsed = time.monotonic() - start
    print("%d threads x %d operations on one client in %.2fs (%.0f ops/s)"
          % (THREADS, OPERATIONS, elapsed, THREADS * OPERATIONS / elapsed))


# Rival transactions.

def test_transactional_counter_from_four_clients(xenstore, client, root):
    counter = root + "/counter"
    client.write(counter, 0)
    clients, increments = 4, 250
    conflicts = []

    def increment(t):
        value = int(t.read(counter)) + 1
        t.write(counter, value)
        return value

    def work():
        seen, tries = [], [0]

        def counted(t):
            tries[0] += 1
            return increment(t)

        with Client(unix_socket_path=xenstore.socket_path, socket_timeout=10) as c:
            for _ in range(increments):
                seen.append(c.run_in_transaction(counted, attempts=1000))
        conflicts.append(tries[0] - increments)
        return seen

    start = time.monotonic()
    workers = [Worker(work) for _ in range(clients)]
    seen = [v for w in workers for v in w.value(timeout=120)]
    elapsed = time.monotonic() - start
    assert client.read(counter) == str(clients * increments)
    # Each committed attempt saw a distinct value: no increment was lost
    # or counted twice.
    assert sorted(seen) == list(range(1, clients * increments + 1))
    print("%d transactional increments in %.2fs, %d retried after a conflict"
          % (clients * increments, elapsed, sum(conflicts)))


def test_transaction_belongs_to_the_client_not_the_thread(xenstore, client, root):
    path = root + "/tx"
    t = Worker(client.transaction).value()
    assert t.tx_id
    Worker(t.write, path, "inside").value()
    assert Worker(t.read, path).value() == "inside"
    with pytest.raises(PyXSError) as info:
        client.read(path)
    assert info.value.errno == errno.ENOENT
    Worker(t.transaction_end, True).value()
    assert client.read(path) == "inside"

    # The same with transaction_start on the client itself.
    with Client(unix_socket_path=xenstore.socket_path, socket_timeout=10) as c:
        tx_id = Worker(c.transaction_start).value()
        assert c.tx_id == tx_id
        Worker(c.write, path, "second").value()
        assert client.read(path) == "inside"
        Worker(c.transaction_end).value()
        assert c.tx_id == 0
    assert client.read(path) == "second"


# Daemons that die or stop.

@pytest.mark.parametrize("kind", daemons.KINDS)
def test_killed_daemon_fails_pending_calls_and_waits(start_daemon, kind):
    """Calls in flight fail at once; a waiter fails once no new connection
    could be made within the timeout (3 s here)."""
    daemon = start_daemon(kind)
    client = Client(unix_socket_path=daemon.socket_path, socket_timeout=3)
    monitor = client.monitor()
    try:
        client.write("/k", "1")
        monitor.watch("/k", "dies")
        assert monitor.wait(timeout=5) == Event("/k", "dies")
        daemon.pause()   # so that the calls below are surely in flight
        calls = [Worker(client.read, "/k") for _ in range(3)]
        waiter = Worker(monitor.wait)
        time.sleep(0.3)
        killed = time.monotonic()
        daemon.kill(signal.SIGKILL)
        for worker in calls:
            result, error = worker.outcome()
            assert isinstance(error, ConnectionError), (result, error)
            assert not isinstance(error, Timeout), error
            assert "closed the connection" in str(error) or "cannot" in str(error), error
        result, error = waiter.outcome()
        assert isinstance(error, ConnectionError), (result, error)
        assert "no new one could be made within 3s" in str(error), error
        # It kept trying for the timeout; the upper bound only catches a hang.
        assert 2.5 < waiter.finished_at - killed < 3 + 10, waiter.finished_at - killed
        # With the daemon gone, the next call fails at once too.
        result, error = Worker(client.read, "/k").outcome(timeout=10)
        assert isinstance(error, ConnectionError), (result, error)
    finally:
        monitor.close()
        client.close()


@pytest.mark.parametrize("kind", daemons.KINDS)
def test_killed_daemon_stops_busy_threads(start_daemon, kind):
    daemon = start_daemon(kind)
    client = Client(unix_socket_path=daemon.socket_path, socket_timeout=20)
    counts = [0] * 4

    def busy(n):
        while True:
            try:
                client.write("/busy/%d" % n, counts[n])
            except ConnectionError as e:
                return e
            counts[n] += 1

    try:
        workers = [Worker(busy, n) for n in range(4)]
        # Killed once every thread is busy, however long a loaded machine
        # takes to get them going; the bound only catches a hang.
        deadline = time.monotonic() + HANG
        while not all(counts) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(counts), "a thread never got going: %r" % (counts,)
        daemon.kill(signal.SIGKILL)
        for worker in workers:
            # Stopped by the close, not by the 20 s timeout; the worker's
            # patience bounds the wait.
            assert not isinstance(worker.value(), Timeout)
    finally:
        client.close()


@pytest.mark.parametrize("kind", daemons.KINDS)
def test_paused_daemon_times_out_then_client_recovers(start_daemon, kind):
    daemon = start_daemon(kind)
    client = Client(unix_socket_path=daemon.socket_path, socket_timeout=1)
    try:
        client.write("/p", "before")
        daemon.pause()
        try:
            start = time.monotonic()
            calls = [Worker(client.read, "/p") for _ in range(3)]
            for worker in calls:
                result, error = worker.outcome()
                assert isinstance(error, Timeout), (result, error)
                assert isinstance(error, ConnectionError)
                # Not (much) before the 1 s timeout; the upper bound only catches a hang.
                assert 0.9 <= worker.finished_at - start < HANG, worker.finished_at - start
        finally:
            daemon.resume()
        # Recovering is what counts now, not how fast a loaded machine
        # lets the daemon answer: the timeout only catches a hang.
        client.connection.timeout = HANG
        assert client.read("/p") == "before"
        client.write("/p", "after")
        assert client.read("/p") == "after"
    finally:
        client.close()


# Connecting.

@pytest.mark.parametrize("kind", daemons.KINDS)
def test_connect_waits_while_the_daemon_is_slow_to_accept(start_daemon, kind):
    """libxenstore's blocking connect waits for the daemon to accept; so
    must ours, within the timeout, even when the daemon's (small) accept
    backlog is full."""
    daemon = start_daemon(kind)
    Client(unix_socket_path=daemon.socket_path, socket_timeout=10).close()

    def connect_and_read():
        with Client(unix_socket_path=daemon.socket_path, socket_timeout=10) as c:
            return c.read("/tool/xenstored")

    daemon.pause()
    try:
        workers = [Worker(connect_and_read) for _ in range(6)]
        time.sleep(0.5)
    finally:
        daemon.resume()
    for worker in workers:
        result, error = worker.outcome()
        assert error is None, "connecting failed: %r" % (error,)


def test_many_clients_connect_at_once(xenstore, root):
    barrier = threading.Barrier(16)

    def one(n):
        barrier.wait(timeout=10)
        with Client(unix_socket_path=xenstore.socket_path, socket_timeout=10) as c:
            c.write("%s/c%d" % (root, n), n)
            return c.read("%s/c%d" % (root, n))

    workers = [Worker(one, n) for n in range(16)]
    failures = []
    for n, worker in enumerate(workers):
        result, error = worker.outcome()
        if error is not None or result != str(n):
            failures.append((n, result, error))
    assert not failures, "%d of 16 clients failed, e.g. %r" % (len(failures), failures[0])
