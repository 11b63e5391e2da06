"""A misbehaving XenStore: every fault fails every caller promptly, and
the client recovers.

The daemon here is the scripted server of tests/support/fakeserver.py
(the ``server`` fixture): each accepted connection runs one *script*, a
function of the :class:`~tests.support.fakeserver.Peer` that stands for
the connection; connections beyond the scripts given are served honestly,
so that a test can check that the client, after a fault, reconnects and
works again.

Every test is bounded in time without pytest-timeout: the calls under
test run in threads joined with a timeout, and scripted servers give up
waiting after a few seconds.
"""

import collections
import errno
import logging
import random
import re
import signal
import threading
import time

import pytest

import pyxs
from pyxs import Client, Event, Monitor, UnixSocketConnection
from pyxs._internal import HEADER, Op, Packet, encode_frame
from pyxs.exceptions import (ConnectionError, InvalidPath, InvalidPayload,
                             InvalidPermission, PyXSError, Timeout, UnexpectedPacket)

from ..support.fakeserver import SERVER_PATIENCE, honest
from ..support.threads import InThread
from .helpers import until

#: How long a thread may take to fail once a fault happened ("promptly").
PROMPT = 5.0
#: How many threads have a call pending when a fault strikes.
PENDING = 4


# Helpers.

class Call(InThread):
    patience = PROMPT + SERVER_PATIENCE


def expect_failure(call, kind, message, since, prompt=PROMPT):
    """Check that *call* failed with *kind* (a ConnectionError subclass)
    whose message matches *message*, at most *prompt* s after *since* (a
    time.monotonic() value, or a function giving it once the call ended)."""
    result, error = call.outcome()
    if callable(since):
        since = since()
    assert error is not None, "the call returned %r instead of failing" % (result,)
    assert isinstance(error, ConnectionError), repr(error)
    assert isinstance(error, kind), repr(error)
    assert re.search(message, str(error)), "unhelpful message: %r" % (str(error),)
    assert call.finished_at - since < prompt, (
        "failed only %.1fs after the fault" % (call.finished_at - since))
    return error


def settle():
    """Give threads just started the time to block."""
    time.sleep(0.2)


# Faults.

def _watch_then_reads(fault, reads=PENDING):
    """A script: answer the WATCH (and send its event), take *reads*
    pending READs, then do *fault* to them."""
    def script(peer):
        peer.answer(peer.take(1, Op.WATCH)[0])
        fault(peer, peer.take(reads, Op.READ))
    return script


def _close(peer, reads):
    peer.close()


def _truncated(peer, reads):
    frame = bytes(Packet(Op.READ, b"a value that will never arrive whole", rq_id=reads[0].rq_id))
    peer.send(frame[:HEADER.size + 7])
    time.sleep(0.1)
    peer.close()


def _oversized(peer, reads):
    peer.send(HEADER.pack(Op.READ, reads[0].rq_id, 0, 5000) + b"x" * 64)
    peer.wait_for_close()


def _unknown_id(peer, reads):
    assert 4242 not in [r.rq_id for r in reads]
    peer.send(Packet(Op.READ, b"stray", rq_id=4242))
    peer.wait_for_close()


def _wrong_type(peer, reads):
    peer.reply(reads[0], b"OK\0", Op.WRITE)
    peer.wait_for_close()


def _wrong_transaction(peer, reads):
    peer.send(Packet(Op.READ, b"value\0", rq_id=reads[0].rq_id, tx_id=77))
    peer.wait_for_close()


def _unknown_type(peer, reads):
    peer.send(encode_frame(999, reads[0].rq_id, 0, b"OK\0"))
    peer.wait_for_close()


def _malformed_event(peer, reads):
    peer.send(Packet(Op.WATCH_EVENT, b"no-separator"))
    peer.wait_for_close()


def _single_nul_event(peer, reads):
    # A path with its NUL, and no token after it.
    peer.send(Packet(Op.WATCH_EVENT, b"/a\0"))
    peer.wait_for_close()


def _silent(peer, reads):
    peer.wait_for_close()


#: fault name -> (what the server does, timeout of the client, expected
#: exception, pattern its message must match, whether the client must
#: close the connection itself).
FAULTS = {
    "closed": (_close, 10, ConnectionError, r"closed the connection", False),
    "truncated": (_truncated, 10, ConnectionError, r"closed the connection", False),
    "oversized": (_oversized, 10, UnexpectedPacket, r"5000.*4096", True),
    # A reply that answers no request says which rule it broke, whole.
    "unknown-id": (_unknown_id, 10, UnexpectedPacket,
                   r"^'[^']+' sent \w+ for request 4242, which was never made$", True),
    "wrong-type": (_wrong_type, 10, UnexpectedPacket,
                   r"^'[^']+' sent WRITE for request \d+, which was READ$", True),
    "wrong-transaction": (_wrong_transaction, 10, UnexpectedPacket,
                          r"^'[^']+' sent \w+ for request \d+, with transaction id 77, "
                          r"which was made with 0$", True),
    "unknown-type": (_unknown_type, 10, UnexpectedPacket, r"unknown type 999", True),
    "malformed-event": (_malformed_event, 10, UnexpectedPacket,
                        r"^'[^']+' sent a malformed watch event b'[^']*'$", True),
    "single-nul-event": (_single_nul_event, 10, UnexpectedPacket,
                         r"^'[^']+' sent a malformed watch event b'/a\\x00'$", True),
    "silent": (_silent, 0.5, Timeout, r"no reply|timed out", True),
}


def check_recovery(srv, client, connections):
    """The same client works again, on a new, honestly served connection."""
    client.write("/after", "fault")
    assert client.read("/after") == "fault"
    assert len(srv.peers) == connections


def check_rewatched(peer, *watches):
    """*peer*, a new connection, was sent exactly *watches* as WATCH
    requests, first thing."""
    deadline = time.monotonic() + PROMPT
    while len(peer.requests) < len(watches) and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = [tuple(r.payload.split(b"\0")[:2]) for r in peer.requests[:len(watches)]
            if r.op is Op.WATCH]
    assert sent == list(watches), peer.requests


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_pending_calls_but_not_the_waiter(server, fault):
    """Several threads with a call pending on one client all fail with
    the fault; the client connects again at once and registers its watch
    again, so the thread in wait() gets the event of the new watch."""
    action, timeout, kind, message, client_closes = FAULTS[fault]
    struck = []

    def fault_script(peer):
        def strike(peer, reads):
            struck.append(time.monotonic())
            action(peer, reads)
        _watch_then_reads(strike)(peer)

    srv = server(fault_script)
    client = Client(unix_socket_path=srv.path, socket_timeout=timeout)
    try:
        client.watch("/w", "token")
        assert client.wait(timeout=PROMPT) == Event("/w", "token")
        waiter = Call(client.wait)
        settle()
        calls = [Call(client.read, "/pending/%d" % i) for i in range(PENDING)]
        for call in calls:
            expect_failure(call, kind, message, since=lambda: struck[0])
        assert waiter.outcome() == (Event("/w", "token"), None)
        peer = srv.peers[0]
        if client_closes:
            assert peer.closed_by_client.wait(PROMPT), \
                "the client kept a connection it could no longer trust"
        check_rewatched(srv.wait_for_peers(2), (b"/w", b"token"))
        check_recovery(srv, client, connections=2)
    finally:
        client.close()


MONITOR_FAULTS = ["closed", "truncated", "oversized", "unknown-id", "unknown-type",
                  "malformed-event", "single-nul-event"]


@pytest.mark.parametrize("fault", MONITOR_FAULTS)
def test_monitor_waiters_outlive_a_fault(server, fault):
    """Two threads wait on one Monitor (its own connection, no request
    pending) when the connection fails: the monitor connects again and
    registers its watch again, one waiter gets the new watch's event and
    the other the event of a later change."""
    action, _, kind, message, client_closes = FAULTS[fault]
    go = threading.Event()
    struck = []

    def fault_script(peer):
        peer.answer(peer.take(1, Op.WATCH)[0])
        assert go.wait(SERVER_PATIENCE)
        struck.append(time.monotonic())
        action(peer, [Packet(Op.READ, b"", rq_id=1)])

    srv = server(fault_script)
    client = Client(unix_socket_path=srv.path, socket_timeout=10)  # never connected
    monitor = client.monitor()
    assert isinstance(monitor, Monitor)
    if True:
        try:
            monitor.watch("/w", "m")
            assert monitor.wait(timeout=PROMPT) == Event("/w", "m")
            waiters = [Call(monitor.wait), Call(monitor.wait, None, 60)]
            settle()
            assert not any(w.done for w in waiters), "wait() returned with nothing to report"
            go.set()
            check_rewatched(srv.wait_for_peers(2), (b"/w", b"m"))
            if client_closes:
                assert srv.peers[0].closed_by_client.wait(PROMPT)
            client.write("/w/later", "x")
            outcomes = sorted(w.outcome() for w in waiters)
            assert outcomes == [(Event("/w", "m"), None), (Event("/w/later", "m"), None)]
            assert len(srv.peers) == 3  # The monitor's two, and the client's.
        finally:
            monitor.close()


class InterruptedOnce(UnixSocketConnection):
    """A connection whose next send, once armed, writes five bytes of its
    message and is then interrupted (as by Ctrl-C)."""

    armed = False

    def send(self, data, timeout):
        if self.armed:
            self.armed = False
            super().send(data[:5], timeout)
            raise KeyboardInterrupt
        super().send(data, timeout)


def test_an_interrupted_write_ends_the_connection(server, caplog):
    """A message cut short cannot be taken back: the connection is ended,
    saying why, and the next call uses a new one."""
    caplog.set_level(logging.DEBUG, logger="pyxs")
    srv = server()
    connection = InterruptedOnce(srv.path, 10)
    with Client(connection=connection) as client:
        client.write("/a", "1")
        connection.armed = True
        with pytest.raises(KeyboardInterrupt):
            client.write("/a", "2")
        assert client.read("/a") == "1"
    assert len(srv.peers) == 2
    ended = "connection to %r ended: a write to %r was interrupted" % (srv.path, srv.path)
    assert ended in [r.getMessage() for r in caplog.records if r.name == "pyxs"]


def test_a_daemon_that_stops_reading_makes_a_write_time_out(server):
    """Requests the daemon never takes fill the socket; sending them is
    bounded by the connection's timeout like waiting for a reply is."""
    stalled = threading.Event()

    def script(peer):
        assert stalled.wait(SERVER_PATIENCE)   # Takes nothing until told.
        peer.close()

    srv = server(script)
    client = Client(unix_socket_path=srv.path, socket_timeout=1)
    try:
        # 64 values of 4,000 bytes: more than a Unix socket holds.
        bulk = Call(client.write_many, [("/big/%d" % i, "x" * 4000) for i in range(64)])
        result, error = bulk.outcome()
        assert isinstance(error, Timeout), (result, error)
        assert "waiting to write" in str(error), error
    finally:
        stalled.set()
        client.close()


def _refusing(*denied):
    """A script: serve honestly, but refuse a WATCH of any path in *denied*."""
    def script(peer):
        def answer(request):
            if request.op is Op.WATCH and request.payload.split(b"\0")[0] in denied:
                peer.reply(request, b"EACCES\0", Op.ERROR)
            else:
                peer.answer(request)
        peer.serve(answer)
    return script


def test_a_watch_refused_on_the_new_connection_is_dropped_and_waiters_told(server, caplog):
    """XenStore may refuse a watch when it is made again after a fault
    (its path's permissions changed, say): that watch is gone, a thread
    waiting on the monitor hears why, and the other watches go on."""
    go = threading.Event()

    def first(peer):
        for _ in range(2):
            peer.answer(peer.take(1, Op.WATCH)[0])
        assert go.wait(SERVER_PATIENCE)
        peer.close()

    srv = server(first, _refusing(b"/denied"))
    with Client(unix_socket_path=srv.path, socket_timeout=10).monitor() as monitor:
        monitor.watch("/kept", "k")
        monitor.watch("/denied", "d")
        assert [monitor.wait(timeout=PROMPT) for _ in range(2)] == [Event("/kept", "k"),
                                                                   Event("/denied", "d")]
        waiters = [Call(monitor.wait, None, 60) for _ in range(2)]
        settle()
        go.set()
        outcomes = [w.outcome() for w in waiters]
        assert (Event("/kept", "k"), None) in outcomes, outcomes
        (_, refusal), = [o for o in outcomes if o[1] is not None]
        assert isinstance(refusal, ConnectionError), refusal
        told = ("XenStore refused to restore the watch on b'/denied' (token b'd') after a "
                "reconnection: (13, 'Permission denied')")
        assert str(refusal) == told
        assert told in [r.getMessage() for r in caplog.records
                        if r.name == "pyxs" and r.levelname == "WARNING"]
        assert list(monitor._channel.watches) == [(b"/kept", b"k")]
        srv.store[b"/kept/x"] = b""
        srv.fire(b"/kept/x")
        assert monitor.wait(timeout=PROMPT) == Event("/kept/x", "k")


def test_a_watch_refused_while_nobody_waits_is_told_to_the_next_wait(server):
    """A refused re-watch is raised by the next wait even when no thread
    was waiting as it came, and once only; a later refusal too."""
    srv = server(honest, _refusing(b"/a"), _refusing(b"/b"))
    with Client(unix_socket_path=srv.path, socket_timeout=10).monitor() as monitor:
        for name in ("a", "b", "kept"):
            monitor.watch("/" + name, name)
        assert {monitor.wait(timeout=PROMPT).token for _ in range(3)} == {"a", "b", "kept"}
        kept = {Event("/a", "a"), Event("/b", "b"), Event("/kept", "kept")}
        for peers, denied in [(1, "/a"), (2, "/b")]:
            kept.discard(Event(denied, denied[1:]))
            srv.wait_for_peers(peers).close()
            # Nobody waits while the watches are made again on a new
            # connection and one of them is refused.
            refused = (denied.encode(), denied[1:].encode())
            until(lambda: refused not in monitor._channel.watches, "the refusal", PROMPT)
            # The events of the watches made again may come first; a wait
            # that times out instead of raising ends the loop.
            with pytest.raises(ConnectionError, match="restore the watch on b'%s'" % denied):
                while monitor.wait(timeout=PROMPT) in kept:
                    pass
            # Told once.
            while (event := monitor.wait(timeout=0.2)) is not None:
                assert event in kept
        srv.store[b"/kept/x"] = b""
        srv.fire(b"/kept/x")
        assert monitor.wait(timeout=PROMPT) == Event("/kept/x", "kept")


def test_two_watches_refused_at_once_are_each_told_once(server):
    """Two watches refused on one new connection, while nobody waits:
    the next two waits raise one each, the one after neither."""
    srv = server(honest, _refusing(b"/a", b"/b"))
    with Client(unix_socket_path=srv.path, socket_timeout=10).monitor() as monitor:
        for name in ("a", "b", "kept"):
            monitor.watch("/" + name, name)
        assert {monitor.wait(timeout=PROMPT).token for _ in range(3)} == {"a", "b", "kept"}
        srv.wait_for_peers(1).close()
        until(lambda: list(monitor._channel.watches) == [(b"/kept", b"kept")], "the refusals",
              PROMPT)
        told = []
        for _ in range(2):
            with pytest.raises(ConnectionError) as refusal:
                while monitor.wait(timeout=PROMPT) == Event("/kept", "kept"):
                    pass
            told.append(re.search(r"restore the watch on b'(/\w)'", str(refusal.value))[1])
        assert sorted(told) == ["/a", "/b"]
        assert monitor.wait(timeout=0.2) in (None, Event("/kept", "kept"))


def test_daemon_closing_while_threads_wait_and_others_call(server):
    """The connection dies while many threads are each in a different
    phase: the calls fail, the waiters get the event of the watch made
    again on the new connection, none hangs, and every later call works."""
    def script(peer):
        peer.answer(peer.take(1, Op.WATCH)[0])
        for _ in range(3):
            peer.answer(peer.take(1, Op.READ)[0])
        peer.take(PENDING, Op.READ)
        peer.close()

    srv = server(script)
    srv.store[b"/x"] = b"1"
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    try:
        client.watch("/w", "t")
        assert client.wait(timeout=PROMPT) == Event("/w", "t")
        for _ in range(3):
            assert client.read("/x") == "1"
        waiters = [Call(client.wait) for _ in range(3)]
        settle()
        calls = [Call(client.read, "/x") for _ in range(PENDING)]
        for call in calls:
            expect_failure(call, ConnectionError, "closed the connection",
                           since=time.monotonic(), prompt=PROMPT + SERVER_PATIENCE)
        # Every thread may call again at once: one reconnects for all.
        again = [Call(client.read, "/x") for _ in range(8)]
        assert [call.outcome() for call in again] == [("1", None)] * 8
        client.write("/w/1", "a")
        client.write("/w/2", "b")
        events = sorted(waiter.outcome() for waiter in waiters)
        assert events == [(Event(p, "t"), None) for p in ("/w", "/w/1", "/w/2")]
        assert len(srv.peers) == 2
    finally:
        client.close()


def test_timeout_is_a_connection_error_and_closes(server):
    """A silent daemon: the call fails with Timeout (a ConnectionError)
    after about socket_timeout, the connection is dropped, and the next
    call connects again."""
    srv = server(lambda peer: (peer.take(1, Op.READ), peer.wait_for_close()))
    client = Client(unix_socket_path=srv.path, socket_timeout=0.5)
    try:
        start = time.monotonic()
        result, error = Call(client.read, "/x").outcome()
        elapsed = time.monotonic() - start
        assert isinstance(error, Timeout) and isinstance(error, ConnectionError), repr(error)
        assert isinstance(error, pyxs.ConnectionError)
        assert str(error) == "no reply from %r within 0.5s" % srv.path
        assert 0.4 <= elapsed < PROMPT, elapsed
        assert srv.peers[0].closed_by_client.wait(PROMPT)
        srv.store[b"/x"] = b"back"
        assert client.read("/x") == "back"
    finally:
        client.close()


# Signals.

@pytest.fixture
def noisy_alarm():
    """SIGALRM every 20 ms, handled by a handler that does nothing."""
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)


def _watchdog(client, seconds=20):
    """Close *client* after *seconds*, which fails a hung call instead of
    letting the test hang (the test runs in the main thread, where the
    signals land)."""
    timer = threading.Timer(seconds, client.close)
    timer.daemon = True
    timer.start()
    return timer


def test_signal_during_call_is_retried(server, noisy_alarm):
    def script(peer):
        request = peer.take(1, Op.READ)[0]
        time.sleep(1.0)
        peer.reply(request, b"slow value")
        peer.serve()

    srv = server(script)
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    watchdog = _watchdog(client)
    try:
        assert client.read("/slow") == "slow value"
        assert len(noisy_alarm) >= 10, "the signal did not fire during the call"
        assert len(srv.peers) == 1
    finally:
        watchdog.cancel()
        client.close()


def test_signal_during_wait_is_retried(server, noisy_alarm):
    ready = threading.Event()

    def script(peer):
        peer.answer(peer.take(1, Op.WATCH)[0])
        assert ready.wait(SERVER_PATIENCE)
        time.sleep(1.0)
        peer.event(b"/w/late", b"tok")
        assert ready.wait(SERVER_PATIENCE)
        time.sleep(1.0)
        peer.event(b"/w/later", b"tok")
        peer.serve()

    srv = server(script)
    monitor = Monitor(UnixSocketConnection(srv.path, 10))
    watchdog = _watchdog(monitor)
    try:
        monitor.watch("/w", "tok")
        assert monitor.wait(timeout=PROMPT) == Event("/w", "tok")
        # A wait with a timeout and nothing coming lasts its whole timeout.
        fired = len(noisy_alarm)
        start = time.monotonic()
        assert monitor.wait(timeout=0.5) is None
        assert time.monotonic() - start >= 0.45
        assert len(noisy_alarm) > fired
        # A wait with a timeout, then one without, each get their event.
        ready.set()
        assert monitor.wait(timeout=PROMPT) == Event("/w/late", "tok")
        fired = len(noisy_alarm)
        assert monitor.wait() == Event("/w/later", "tok")
        assert len(noisy_alarm) >= fired + 10
    finally:
        watchdog.cancel()
        monitor.close()


# Refused before sent.

INVALID_CALLS = [
    ("read", ("no spaces",), InvalidPath),
    ("read", ("/a//b",), InvalidPath),
    ("read", ("/trailing/",), InvalidPath),
    ("read", ("",), InvalidPath),
    ("read", ("@introduceDomain",), InvalidPath),
    ("read", ("/" + "a" * 3072,), InvalidPath),
    ("read", ("a" * 2049,), InvalidPath),
    ("read", ("/nul\0inside",), InvalidPath),
    ("write", ("/bad path", "v"), InvalidPath),
    ("write", ("/big", "v" * 4096), InvalidPayload),
    ("mkdir", ("/x/",), InvalidPath),
    ("rm", ("//",), InvalidPath),
    ("ls", ("/ü",), InvalidPath),
    ("set_permissions", ("/p", []), InvalidPermission),
    ("set_permissions", ("/p", ["x0"]), InvalidPermission),
    ("set_permissions", ("/p", "r0"), InvalidPermission),
    ("watch", ("/w", "tok\0en"), InvalidPayload),
    ("watch", ("bad path", "t"), InvalidPath),
    ("unwatch", ("@nonsense", "t"), InvalidPath),
    ("get_domain_path", (-1,), InvalidPayload),
    ("introduce_domain", (1, "x", 3), InvalidPayload),
]


def test_invalid_input_raises_before_anything_is_sent(server):
    srv = server()
    srv.store[b"/ok"] = b"fine"
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    try:
        client.connect()
        peer = srv.wait_for_peers(1)
        for name, args, kind in INVALID_CALLS:
            with pytest.raises(kind) as info:
                getattr(client, name)(*args)
            assert isinstance(info.value, ValueError), (name, args)
            assert isinstance(info.value, PyXSError), (name, args)
        # Give any stray bytes the time to arrive, then look.
        time.sleep(0.2)
        assert bytes(peer.received) == b"", "invalid requests reached the daemon"
        # The connection is still the same, and still works.
        assert client.read("/ok") == "fine"
        assert len(srv.peers) == 1
        assert [r.op for r in peer.requests] == [Op.READ]
    finally:
        client.close()


# No silent loss.

def test_write_gets_ok_or_raises(server):
    """A write returns only when the daemon said OK; anything else
    raises."""
    def script(peer):
        w = peer.take(1, Op.WRITE)[0]
        peer.reply(w, b"EACCES\0", Op.ERROR)
        w = peer.take(1, Op.WRITE)[0]
        peer.reply(w, b"NOT OK\0")
        peer.take(1, Op.WRITE)
        peer.close()

    srv = server(script)
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    try:
        with pytest.raises(PyXSError) as info:
            client.write("/a", "1")
        assert info.value.errno == errno.EACCES
        with pytest.raises(UnexpectedPacket) as info:
            client.write("/a", "2")
        assert "NOT OK" in str(info.value)
        # A write whose reply never comes raises too.
        result, error = Call(client.write, "/a", "3").outcome()
        assert isinstance(error, ConnectionError), (result, error)
        client.write("/a", "4")
        assert srv.store[b"/a"] == b"4"
    finally:
        client.close()


def test_no_write_is_lost_when_the_connection_dies(server):
    """Threads write while the daemon acknowledges some writes and then
    drops the connection with others pending: each write either
    returned, and then the daemon had acknowledged it, or raised."""
    def script(peer):
        for _ in range(40):
            request = peer.take(1, Op.WRITE)[0]
            peer.answer(request)
        peer.take(1, Op.WRITE)
        peer.close()

    srv = server(script)
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    returned, raised = set(), set()
    lock = threading.Lock()

    def writer(n):
        for i in range(30):
            path = "/w%d/%d" % (n, i)
            try:
                client.write(path, "v")
            except ConnectionError:
                with lock:
                    raised.add(path)
            else:
                with lock:
                    returned.add(path)

    try:
        calls = [Call(writer, n) for n in range(4)]
        for call in calls:
            assert call.outcome() == (None, None)
        assert raised, "the connection never died under the writers"
        assert len(returned) + len(raised) == 120
        lost = {p for p in returned if p.encode() not in srv.store}
        assert not lost, "writes returned but never stored: %r" % sorted(lost)
        assert len(srv.peers) >= 2
    finally:
        client.close()


def test_lone_call_answered_with_wrong_type_fails_cleanly(server):
    """The simplest case of a reply of the wrong type: one READ answered
    as if it were a WRITE.  The caller gets UnexpectedPacket naming both
    types, and the client works again afterwards."""
    def script(peer):
        peer.reply(peer.take(1, Op.READ)[0], b"OK\0", Op.WRITE)
        peer.wait_for_close()

    srv = server(script)
    client = Client(unix_socket_path=srv.path, socket_timeout=10)
    try:
        expect_failure(Call(client.read, "/x"), UnexpectedPacket, r"WRITE.*READ",
                       since=time.monotonic())
        assert srv.peers[0].closed_by_client.wait(PROMPT)
        check_recovery(srv, client, connections=2)
    finally:
        client.close()


def test_reader_takes_the_lock_back_when_a_signal_handler_raises():
    # CPython lets a signal interrupt a blocked Lock.acquire(); the reader
    # must still get the lock back (and file what it read) before the
    # exception goes on, or the channel would believe a reader is active.
    from pyxs._channel import _relock

    class InterruptedOnce:
        attempts = 0

        def acquire(self):
            self.attempts += 1
            if self.attempts == 1:
                raise KeyboardInterrupt

    lock = InterruptedOnce()
    assert isinstance(_relock(lock), KeyboardInterrupt)
    assert lock.attempts == 2
    assert _relock(threading.Lock()) is None


class Interrupted(BaseException):
    """What a signal handler raised (as KeyboardInterrupt would be)."""


class InterruptibleLock:
    """A channel's lock whose next acquire, once armed, is interrupted the
    way a signal handler that raises interrupts a blocked acquire."""

    def __init__(self, lock):
        self._lock = lock
        self.armed = False

    def acquire(self, *args):
        if self.armed:
            self.armed = False
            raise Interrupted
        return self._lock.acquire(*args)

    def release(self):
        self._lock.release()

    def __enter__(self):
        self.acquire()

    def __exit__(self, *exc_info):
        self.release()


def test_a_reader_interrupted_taking_the_lock_back_files_what_it_read(server):
    """The interrupted reader takes the lock back, files the reply it
    read, lets go of the reading role, and only then raises; the client
    goes on."""
    srv = server()
    srv.store[b"/x"] = b"1"

    class ArmingConnection(UnixSocketConnection):
        reads_left_to_arm = 1

        def read(self):
            data = super().read()
            if self.reads_left_to_arm:
                self.reads_left_to_arm -= 1
                lock.armed = True   # the reader's next acquire is interrupted
            return data

    client = Client(connection=ArmingConnection(srv.path, 10))
    try:
        channel = client._channel
        lock = channel._lock = InterruptibleLock(channel._lock)
        with pytest.raises(Interrupted):
            client.read("/x")
        assert (channel.awaited, channel._reader, lock.armed) == (0, None, False)
        assert client.read("/x") == "1"
    finally:
        lock.armed = False
        client.close()


# Fuzzed replies.

def _fuzz_reply(rng, request):
    """A random, well-framed reply to *request*: mostly of its own type,
    id and transaction, with a payload of random NUL-separated words."""
    op = request.op if rng.random() < 0.7 else rng.choice(list(Op))
    rq_id = request.rq_id if rng.random() < 0.95 else rng.randrange(2 ** 32)
    tx_id = request.tx_id if rng.random() < 0.95 else rng.randrange(2 ** 32)
    words = [rng.choice([b"OK", b"ENOENT", b"EAGAIN", b"E2BIG", b"T", b"F", b"0", b"1",
                         b"4294967296", b"-3", b"", b"/a", b"child",
                         bytes(rng.randrange(256) for _ in range(rng.randrange(8)))])
             for _ in range(rng.randrange(4))]
    payload = b"\0".join(words) + (b"\0" if rng.random() < 0.8 else b"")
    return encode_frame(op, rq_id, tx_id, payload)


def _fuzzer(seed):
    def script(peer):
        rng = random.Random(seed * 1000 + peer.index)
        try:
            while True:
                request = peer.next_request()
                if request is None:
                    return
                peer.send(_fuzz_reply(rng, request))
        except OSError:
            pass
    return script


def _public_calls(client, rng):
    """Every public operation of Client and Monitor, with ordinary args."""
    import itertools

    def in_transaction(t):
        t.write("/t", "1")
        return t.read("/t")
    return [
        lambda: client.read("/a"), lambda: client.read_bytes("/a"),
        lambda: client.write("/a", "v"), lambda: client.mkdir("/a"),
        lambda: client.rm("/a"), lambda: client.ls("/a"),
        lambda: client.get_permissions("/a"), lambda: client.set_permissions("/a", ["b0"]),
        lambda: client.read_many(["/a", "/b", "/c"]),
        lambda: list(itertools.islice(client.walk("/"), 20)),
        lambda: client.get_domain_path(1), lambda: client.is_domain_introduced(1),
        lambda: client.introduce_domain(1, 2, 3), lambda: client.release_domain(1),
        lambda: client.resume_domain(1), lambda: client.set_target(1, 2),
        lambda: (client.transaction_start(), client.transaction_end(rng.random() < 0.5)),
        lambda: client.transaction().transaction_end(),
        lambda: client.run_in_transaction(in_transaction, attempts=2),
        lambda: client.watch("/w", "t%d" % rng.randrange(3)),
        lambda: client.unwatch("/w", "t%d" % rng.randrange(3)),
        lambda: client.wait(timeout=0),
        lambda: client.wait_for("/a", "x", timeout=0.01),
    ]


@pytest.mark.parametrize("seed", range(2))
def test_fuzzed_replies_only_ever_raise_pyxs_errors(server, seed):
    """A daemon that answers every request with random (well-framed)
    replies: every call returns, or raises a PyXSError subclass (or, for
    wait_for, the TimeoutError it documents), within its timeout."""
    srv = server(*[_fuzzer(seed)] * 10000)
    rng = random.Random(seed)
    # A reply of the type WATCH_EVENT leaves its request unanswered: such
    # calls time out, so the timeout is short.
    client = Client(unix_socket_path=srv.path, socket_timeout=0.5)
    calls = _public_calls(client, rng)
    outcomes = collections.Counter()
    try:
        for _ in range(1000):
            call = rng.choice(calls)
            if client.tx_id and rng.random() < 0.5:
                call = client.transaction_end
            result, error = Call(call).outcome()
            if error is not None and not isinstance(error, PyXSError):
                assert isinstance(error, TimeoutError) and call is calls[-1], repr(error)
            outcomes["raised" if error else "returned"] += 1
    finally:
        client.close()
    assert outcomes["raised"] and outcomes["returned"], outcomes
