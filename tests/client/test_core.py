"""Behaviours of the client's request, reply, transaction and watch core
that the rest of the suite left open (found by mutation testing, see
docs/contributing.rst): Client.read_many, a transaction whose connection
was lost, walk's error handling and its paged listings,
run_in_transaction with one attempt, and bytes-like arguments.

They hold for any correct client, whatever its internals: a scripted
server (tests/support/fakeserver.py) where a daemon cannot be made to misbehave,
every backend otherwise.
"""

import errno
import threading
import time

import pytest

import pyxs.connection
from pyxs import Client, Monitor, UnixSocketConnection
from pyxs._internal import Event, Op, Packet, PacketDecoder
from pyxs.client import PIPELINE_DEPTH
from pyxs.exceptions import (ConnectionError, EventsDropped, PyXSError, Timeout,
                             UnexpectedPacket)

from ..support.commands import run_program
from ..support.threads import InThread
from .helpers import TIMEOUT, names_totalling, nothing_sent, other_client, until


def scripted_client(srv):
    return Client(unix_socket_path=srv.path, socket_timeout=TIMEOUT)


def answering(replies, every=None):
    """A script: answer each (op, payload) found in *replies* with its
    (op, payload), every request of an op in *every* with its payload,
    anything else as the honest server would."""
    every = every or {}

    def script(peer):
        def answer(request):
            scripted = replies.get((request.op, request.payload))
            if request.op in every:
                scripted = (request.op, every[request.op])
            if scripted is None:
                peer.answer(request)
            else:
                op, payload = scripted
                peer.reply(request, payload, op)
        peer.serve(answer)
    return script


def error_reply(name):
    return (Op.ERROR, name.encode() + b"\0")


# Client.read_many.

def test_read_many_gives_values_in_order_and_none_for_missing(client, root):
    count = 2 * PIPELINE_DEPTH + 3
    # Missing nodes on both sides of each batch boundary, and elsewhere.
    missing = {0, 5, PIPELINE_DEPTH - 1, PIPELINE_DEPTH, 2 * PIPELINE_DEPTH, count - 1}
    paths = ["%s/n%d" % (root, i) for i in range(count)]
    for i, path in enumerate(paths):
        if i not in missing:
            client.write(path, "v%d" % i)
    values = client.read_many(paths)
    assert values == [None if i in missing else "v%d" % i for i in range(count)]
    assert client.read_many([]) == []
    assert client.read_many(iter(paths[1:3])) == ["v1", "v2"]


class CountingConnection(UnixSocketConnection):
    """A Unix socket connection that counts the requests of each write,
    and how many requests are in flight after each write."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes = []
        self.in_flight = []
        self._replies = PacketDecoder()
        self._outstanding = 0

    def send(self, data, timeout):
        count = len(PacketDecoder().feed(data))
        self.writes.append(count)
        self._outstanding += count
        self.in_flight.append(self._outstanding)
        super().send(data, timeout)

    def read(self):
        data = super().read()
        self._outstanding -= len(self._replies.feed(data))
        return data


@pytest.mark.parametrize("bulk", ["read_many", "write_many"])
def test_bulk_calls_keep_at_most_pipeline_depth_requests_in_flight(xenstore, root, bulk):
    connection = CountingConnection(xenstore.socket_path, TIMEOUT)
    count = 2 * PIPELINE_DEPTH + 3
    with Client(connection=connection) as c:
        c.write(root + "/x", "v")
        del connection.writes[:], connection.in_flight[:]
        if bulk == "read_many":
            assert c.read_many([root + "/x"] * count) == ["v"] * count
        else:
            c.write_many((root + "/x", str(i)) for i in range(count))
            assert c.read(root + "/x") == str(count - 1)
            del connection.writes[-1:], connection.in_flight[-1:]
    # The first write fills the pipeline; each later one tops it up once
    # half of it has been answered, so XenStore never runs dry.
    half = PIPELINE_DEPTH // 2
    assert connection.writes == [PIPELINE_DEPTH, half, half, 3]
    assert max(connection.in_flight) == PIPELINE_DEPTH
    assert all(n <= PIPELINE_DEPTH for n in connection.in_flight)


@pytest.mark.parametrize("dirs, leaves", [(3, 40), (40, 10)], ids=["deep", "wide"])
def test_walk_reads_ahead_in_batches_and_within_the_pipeline(xenstore, root, dirs, leaves):
    connection = CountingConnection(xenstore.socket_path, TIMEOUT)
    with Client(connection=connection) as c:
        c.write_many(("%s/w/d%02d/n%02d" % (root, d, n), "v")
                     for d in range(dirs) for n in range(leaves))
        del connection.writes[:], connection.in_flight[:]
        nodes = list(c.walk(root + "/w"))
    assert len(nodes) == 1 + dirs + dirs * leaves
    # Two requests (listing and value) per node; many nodes per write,
    # even when directories requested early (the wide tree's) wait long
    # for their turn; never more than the pipeline (and the next node's
    # two) in flight.
    assert sum(connection.writes) == 2 * len(nodes)
    assert len(connection.writes) <= len(nodes) // 8
    assert max(connection.in_flight) <= PIPELINE_DEPTH + 2


@pytest.mark.parametrize("dirs, leaves", [(3, 40), (40, 10)], ids=["deep", "wide"])
def test_walk_keeps_within_the_pipeline_when_replies_come_slowly(xenstore, root, monkeypatch,
                                                                 dirs, leaves):
    """Read 70 bytes at a time (two or three replies, often the start of
    one more), replies are filed a few at a time and many requests stay
    unanswered: the read-ahead then has little room, often an odd number
    of requests, and must still keep within it and batch what it can."""
    connection = CountingConnection(xenstore.socket_path, TIMEOUT)
    with Client(connection=connection) as c:
        c.write_many(("%s/w/d%02d/n%02d" % (root, d, n), "v")
                     for d in range(dirs) for n in range(leaves))
        monkeypatch.setattr(pyxs.connection, "READ_SIZE", 70)
        del connection.writes[:], connection.in_flight[:]
        nodes = list(c.walk(root + "/w"))
    assert len(nodes) == 1 + dirs + dirs * leaves
    assert sum(connection.writes) == 2 * len(nodes)
    assert max(connection.in_flight) <= PIPELINE_DEPTH + 2
    assert len(connection.writes) <= len(nodes) // 2


@pytest.mark.parametrize("error", ["EACCES", "EINVAL", "E2BIG"])
@pytest.mark.parametrize("position", [0, PIPELINE_DEPTH - 1, PIPELINE_DEPTH + 1],
                         ids=["first", "end-of-batch", "second-batch"])
def test_read_many_raises_errors_other_than_enoent(server, error, position):
    srv = server(answering({(Op.READ, b"/denied\0"): error_reply(error)}))
    srv.store[b"/a"] = b"va"
    paths = ["/a"] * (PIPELINE_DEPTH + 2)
    paths[position] = "/denied"
    with scripted_client(srv) as c:
        with pytest.raises(PyXSError) as info:
            c.read_many(["/missing"] + paths)
        assert info.value.errno == getattr(errno, error)
        # The replies left unread do not confuse the next call.
        assert c.read_many(["/a", "/missing"]) == ["va", None]


# Client.write_many.

def test_write_many_writes_in_order_from_pairs_or_a_mapping(client, root):
    count = 2 * PIPELINE_DEPTH + 3
    paths = ["%s/d/n%d" % (root, i) for i in range(count)]
    client.write_many((path, "v%d" % i) for i, path in enumerate(paths))
    assert client.read_many(paths) == ["v%d" % i for i in range(count)]
    # Parents are made as write() makes them; a path given twice keeps
    # its last value; values are what write() takes.
    assert client.read(root + "/d") == ""
    client.write_many([(paths[0], "first"), (paths[1], b"\xff"), (paths[0], "last")])
    assert client.read_bytes(paths[0]) == b"last"
    assert client.read_bytes(paths[1]) == b"\xff"
    client.write_many({paths[2]: "from a mapping"})
    assert client.read(paths[2]) == "from a mapping"
    client.write_many([])


@pytest.mark.parametrize("bad", [("relative//path", "v"), (5, "v"), ("/ok", "x" * 5000)],
                         ids=["path", "path-type", "value-size"])
def test_write_many_checks_everything_before_sending_anything(client, root, bad):
    items = [(root + "/a", "v")] * (PIPELINE_DEPTH + 1) + [bad]
    with nothing_sent(client):
        with pytest.raises((PyXSError, TypeError)) as info:
            client.write_many(items)
    assert isinstance(info.value, (ValueError, TypeError))
    assert not client.exists(root + "/a")


@pytest.mark.parametrize("position", [0, PIPELINE_DEPTH - 1, PIPELINE_DEPTH + 1],
                         ids=["first", "end-of-window", "later"])
def test_write_many_raises_the_first_refusal_and_sends_nothing_after_its_window(
        server, position):
    srv = server(answering({(Op.WRITE, b"/denied\0v"): error_reply("EACCES")}))
    items = [("/n%d" % i, "v") for i in range(3 * PIPELINE_DEPTH)]
    items[position] = ("/denied", "v")
    with scripted_client(srv) as c:
        with pytest.raises(PyXSError) as info:
            c.write_many(items)
        assert info.value.errno == errno.EACCES
        # The replies left unread do not confuse the next call.
        c.write("/after", "ok")
        assert c.read("/after") == "ok"
        assert c.read_many(["/n%d" % i for i in range(position)]) == ["v"] * position
    # Writes were sent in order, never more than PIPELINE_DEPTH ahead of
    # the refused one.
    written = [r.payload.split(b"\0")[0] for r in srv.peers[0].requests
               if r.op is Op.WRITE][:-1]
    assert written == [p.encode() for p, _ in items[:len(written)]]
    assert position < len(written) <= position + PIPELINE_DEPTH


def test_write_many_in_a_transaction_is_all_or_nothing(client, root):
    paths = ["%s/vm/%d" % (root, i) for i in range(PIPELINE_DEPTH + 5)]
    with pytest.raises(RuntimeError):
        with client.transaction() as t:
            t.write_many((path, "v") for path in paths)
            raise RuntimeError("changed my mind")
    assert client.read_many(paths) == [None] * len(paths)
    with client.transaction() as t:
        t.write_many((path, "v") for path in paths)
        assert client.read_many(paths[:1]) == [None]   # Not yet, outside it.
    assert client.read_many(paths) == ["v"] * len(paths)


# Lost transactions.

def close_after_transaction_start(peer):
    peer.reply(peer.take(1, Op.TRANSACTION_START)[0], b"7\0")
    peer.close()


def requests_after_the_loss(srv):
    return [(r.op, r.tx_id) for peer in srv.peers[1:] for r in peer.requests]


def test_lost_transaction_is_never_continued_on_a_new_connection(server):
    srv = server(close_after_transaction_start)
    with scripted_client(srv) as c:
        t = c.transaction()
        assert t.tx_id == 7
        # The first call learns that the connection broke...
        with pytest.raises(ConnectionError):
            t.write("/a", "in the transaction")
        # ...and later ones must not carry the transaction elsewhere.
        for call in (lambda: t.write("/a", "v"), lambda: t.read("/a"),
                     lambda: t.read_many(["/a"]), lambda: list(t.walk("/"))):
            with pytest.raises(ConnectionError, match="^the connection that carried this "
                               "transaction was lost, and the transaction with it$"):
                call()
        with pytest.raises(ConnectionError):
            t.transaction_end(commit=True)
        assert t.tx_id == 0
        assert c.read_many(["/a"]) == [None]   # A new connection, outside it.
    assert all(tx_id == 0 for _, tx_id in requests_after_the_loss(srv))
    assert (Op.READ, 0) in requests_after_the_loss(srv)


def test_lost_transaction_commit_raises_abort_does_not(server):
    srv = server(close_after_transaction_start, close_after_transaction_start)
    with scripted_client(srv) as c:
        with pytest.raises(ConnectionError):
            with c.transaction() as t:
                with pytest.raises(ConnectionError):
                    t.write("/a", "v")
        t = c.transaction()
        with pytest.raises(ConnectionError):
            t.read("/a")
        assert t.transaction_end(commit=False) is None
        assert t.tx_id == 0
    assert all(op is not Op.TRANSACTION_END for op, _ in requests_after_the_loss(srv))


# Transaction replies.

def answer_transaction_start_with(payload):
    return answering({(Op.TRANSACTION_START, b"\0"): (Op.TRANSACTION_START, payload)})


@pytest.mark.parametrize("payload", [b"0\0", b"4294967296\0", b"04294967296\0", b"12",
                                     b"abc\0", b"-1\0", b"+5\0", b" 5\0", b"\0",
                                     b"12345678901\0", b"00000000001\0"],
                         ids=["zero", "over-32-bits", "11-digits-leading-zero", "no-nul",
                              "letters", "negative", "plus", "space", "empty", "11-digits",
                              "11-digits-small"])
def test_transaction_start_refuses_what_is_not_a_transaction_id(server, payload):
    srv = server(answer_transaction_start_with(payload))
    with scripted_client(srv) as c:
        with pytest.raises(UnexpectedPacket) as info:
            c.transaction_start()
        assert str(info.value) == "%r answered TRANSACTION_START with %r, which is not a " \
            "transaction id" % (srv.path, payload)
        assert c.tx_id == 0
    # The connection whose daemon may hold an unnamed transaction is ended.
    assert srv.peers[0].closed_by_client.wait(TIMEOUT)


@pytest.mark.parametrize("payload, tx_id", [(b"1\0", 1), (b"4294967295\0", 4294967295),
                                            (b"0000000007\0", 7)])
def test_transaction_start_takes_any_32_bit_id(server, payload, tx_id):
    srv = server(answer_transaction_start_with(payload))
    with scripted_client(srv) as c:
        assert c.transaction_start() == tx_id
        assert c.tx_id == tx_id
        with pytest.raises(PyXSError) as info:
            c.transaction_start()
        assert info.value.errno == errno.EALREADY
        c.read_many(["/x"])
    [start] = [r for r in srv.peers[0].requests if r.op is Op.TRANSACTION_START]
    assert (start.payload, start.tx_id) == (b"\0", 0)
    [read] = [r for r in srv.peers[0].requests if r.op is Op.READ]
    assert read.tx_id == tx_id


@pytest.mark.parametrize("op, call", [
    (Op.TRANSACTION_END, lambda c: c.transaction().transaction_end()),
    (Op.WATCH, lambda c: c.watch("/w", "t")),
    (Op.UNWATCH, lambda c: (c.watch("/w", "t"), c.unwatch("/w", "t"))),
    (Op.WRITE, lambda c: c.write("/w", "v")),
], ids=["transaction_end", "watch", "unwatch", "write"])
def test_a_reply_other_than_ok_is_unexpected(server, op, call):
    srv = server(answering({}, every={op: b"NOTOK\0"}))
    with scripted_client(srv) as c:
        with pytest.raises(UnexpectedPacket) as info:
            call(c)
    assert str(info.value) == "XenStore answered %s with b'NOTOK\\x00' instead of OK" % op.name


def test_watch_event_with_more_strings_gives_path_and_token(server):
    def extra_strings(peer):
        request = peer.take(1, Op.WATCH)[0]
        peer.reply(request, b"OK\0")
        peer.send(Packet(Op.WATCH_EVENT, b"/w\0tok\0extra\0"))
        peer.wait_for_close()

    with scripted_client(server(extra_strings)) as c:
        c.watch("/w", "tok")
        assert c.wait(timeout=TIMEOUT) == Event("/w", "tok")


# Walk.

def walk_script(child_error):
    return answering({
        (Op.DIRECTORY, b"/top\0"): (Op.DIRECTORY, b"bad\0good\0"),
        (Op.READ, b"/top\0"): (Op.READ, b"t"),
        (Op.DIRECTORY, b"/top/bad\0"): error_reply(child_error),
        (Op.READ, b"/top/bad\0"): error_reply(child_error),
        (Op.DIRECTORY, b"/top/good\0"): (Op.DIRECTORY, b""),
        (Op.READ, b"/top/good\0"): (Op.READ, b"g"),
    })


@pytest.mark.parametrize("error", ["ENOENT", "EACCES"])
def test_walk_skips_nodes_gone_or_forbidden(server, error):
    with scripted_client(server(walk_script(error))) as c:
        assert list(c.walk("/top")) == [("/top", "t", ["bad", "good"]),
                                        ("/top/good", "g", [])]


@pytest.mark.parametrize("error", ["EIO", "EINVAL", "ENOMEM", "EPERM"])
def test_walk_raises_other_errors(server, error):
    with scripted_client(server(walk_script(error))) as c:
        walk = c.walk("/top")
        assert next(walk) == ("/top", "t", ["bad", "good"])
        with pytest.raises(PyXSError) as info:
            next(walk)
        assert info.value.errno == getattr(errno, error)


def test_walk_through_a_listing_over_4096_bytes(client, root, xenstore):
    names = names_totalling(5000)
    for i, name in enumerate(names):
        client.write("%s/big/%s" % (root, name), str(i))
    client.write("%s/big/%s/leaf" % (root, names[-1]), "deep")
    expected = {root: ("", ["big"]), root + "/big": ("", sorted(names))}
    expected.update(("%s/big/%s" % (root, name), (str(i), [])) for i, name in enumerate(names))
    expected["%s/big/%s" % (root, names[-1])] = (str(len(names) - 1), ["leaf"])
    expected["%s/big/%s/leaf" % (root, names[-1])] = ("deep", [])
    if xenstore.kind == "oxenstored":
        # It cannot page, and sends the listing in one oversized reply
        # (see Client.ls).
        with pytest.raises(UnexpectedPacket):
            list(client.walk(root))
        return
    seen = {path: (value, sorted(children)) for path, value, children in client.walk(root)}
    assert seen == expected


def test_walk_from_the_root_and_through_names_ending_in_x(client, root):
    client.write(root + "/nodeX/child", "c")
    client.write(root + "/a/b", "v")
    walked = {path: sorted(children) for path, _, children in client.walk(root)}
    assert walked == {root: ["a", "nodeX"], root + "/a": ["b"], root + "/a/b": [],
                      root + "/nodeX": ["child"], root + "/nodeX/child": []}
    top = client.walk("/")
    path, _, children = next(top)
    assert path == "/"
    paths = [p for p, _, _ in top]
    assert set(children) <= {p[1:] for p in paths if p.count("/") == 1}
    assert all(not p.startswith("//") for p in paths)


def test_walk_asks_for_each_node_once_in_bounded_batches(xenstore, root):
    connection = CountingConnection(xenstore.socket_path, TIMEOUT)
    with Client(connection=connection) as c:
        for d in range(6):
            for leaf in range(40):
                c.write("%s/d%d/l%d" % (root, d, leaf), "v")
        del connection.writes[:]
        nodes = list(c.walk(root))
    assert len(nodes) == 1 + 6 + 6 * 40
    # One DIRECTORY and one READ per node, never asked twice...
    assert sum(connection.writes) == 2 * len(nodes)
    # ...at most PIPELINE_DEPTH in flight, and many in each write.
    assert max(connection.writes) <= PIPELINE_DEPTH
    assert len(connection.writes) <= len(nodes) // 4


# Client.run_in_transaction.

def test_run_in_transaction_with_one_attempt_does_not_retry(client, xenstore, root):
    rival = other_client(xenstore)
    calls = []

    def conflicts(t):
        calls.append(t.tx_id)
        t.write(root + "/c", t.read(root + "/c") + "x")
        rival.write(root + "/c", "rival")

    try:
        client.write(root + "/c", "")
        with pytest.raises(PyXSError) as info:
            client.run_in_transaction(conflicts, attempts=1)
        assert info.value.errno == errno.EAGAIN
        assert len(calls) == 1
        assert client.read(root + "/c") == "rival"
        assert client.run_in_transaction(lambda t: t.read(root + "/c"), attempts=1) == "rival"
    finally:
        rival.close()


@pytest.mark.parametrize("attempts", [0, -1])
def test_run_in_transaction_needs_an_attempt(client, attempts):
    calls = []
    with pytest.raises(ValueError) as info:
        client.run_in_transaction(calls.append, attempts=attempts)
    assert str(info.value) == "attempts must be at least 1, not %d" % attempts
    assert calls == []
    assert client.tx_id == 0


# Bytes-like arguments.

@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=lambda k: k.__name__)
def test_bytes_like_values_and_paths(client, root, kind):
    path = kind((root + "/b").encode())
    client.write(path, kind(b"x\x00\xff"))
    assert client.read_bytes(root + "/b") == b"x\x00\xff"
    assert client.read_bytes(path) == b"x\x00\xff"
    client.set_permissions(path, [kind(b"b0"), kind(b"r5")])
    assert client.get_permissions(path) == ["b0", "r5"]


def test_domain_ids_as_text(client):
    assert client.get_domain_path("5") == "/local/domain/5"
    assert client.get_domain_path(b"7") == "/local/domain/7"
    assert client.is_domain_introduced("0") is True


# Spinning for a reply.

class ScriptedPoll:
    """A poll object that finds the connection readable from its
    *ready_at*-th call on, that call having slept *sleep* seconds first
    (off the CPU, as a preempted thread is)."""

    def __init__(self, ready_at, sleep=0.0):
        self.calls, self.ready_at, self.sleep = 0, ready_at, sleep

    def poll(self, timeout):
        self.calls += 1
        if self.calls == self.ready_at and self.sleep:
            time.sleep(self.sleep)
        return [(3, 1)] if self.calls >= self.ready_at else []


class ReadGives:
    def __init__(self, data):
        self.data = data

    def read(self):
        return self.data


def test_a_spin_pays_only_for_a_reply_that_came_while_it_kept_the_cpu():
    """What a spin tells about spinning (see SPIN_BACKOFF_MAX): a reply
    there at once tells nothing; one that came while the thread kept its
    CPU pays; nothing at all, a wake-up with nothing to read, or a reply
    that came while the thread was off its CPU does not."""
    from pyxs._channel import _spin

    assert _spin(ReadGives(b"r"), ScriptedPoll(1)) == (b"r", None)
    assert _spin(ReadGives(b"r"), ScriptedPoll(10 ** 9)) == (b"", False)
    # Readable at the first check of the spin.
    assert _spin(ReadGives(b""), ScriptedPoll(2)) == (b"", False)
    assert _spin(ReadGives(b"r"), ScriptedPoll(2, sleep=0.002)) == (b"r", False)
    # The thread may be preempted in any one try, on a busy machine.
    verdicts = [_spin(ReadGives(b"r"), ScriptedPoll(2)) for _ in range(100)]
    assert (b"r", True) in verdicts
    assert set(verdicts) <= {(b"r", True), (b"r", False)}


def test_a_caller_stops_spinning_where_it_does_not_pay_and_resumes_where_it_does(monkeypatch):
    """A spin that does not pay makes the next 1, 2, 4 ... calls sleep at
    once (up to SPIN_BACKOFF_MAX); a spin that pays resets that, and one
    that finds its reply there at once changes nothing."""
    from pyxs import _channel
    from pyxs.testing import XenStoreServer

    spins = []

    def never_in_time(connection, poll):
        spins.append("missed")
        return b"", False

    def always_in_time(connection, poll):
        spins.append("seen")
        poll.poll(TIMEOUT * 1000)
        return connection.read(), True

    def spins_in_300_reads(emulator):
        del spins[:]
        c = Client(unix_socket_path=emulator.socket_path, socket_timeout=TIMEOUT)
        for _ in range(300):
            assert c.read("/x") == "v"
        return c, len(spins)

    with XenStoreServer() as emulator:
        with Client(unix_socket_path=emulator.socket_path, socket_timeout=TIMEOUT) as c:
            c.write("/x", "v")
        monkeypatch.setattr(_channel, "_spin", never_in_time)
        c, count = spins_in_300_reads(emulator)
        c.close()
        # Calls 1, 3, 6, 11, 20, 37, 70, 135 and 264.
        assert count == 9
        monkeypatch.setattr(_channel, "SPIN_BACKOFF_MAX", 4)
        c, count = spins_in_300_reads(emulator)
        # Calls 1, 3, 6, 11, then every fifth.
        assert count == 3 + 1 + (300 - 11) // 5
        # Spins that pay: every call spins again.
        monkeypatch.setattr(_channel, "_spin", always_in_time)
        with c:
            for _ in range(5):
                c.read("/x")
            del spins[:]
            for _ in range(100):
                c.read("/x")
            assert spins == ["seen"] * 100

            # Replies there at once tell nothing: the back-off stays.
            def at_once(connection, poll):
                spins.append("at once")
                poll.poll(TIMEOUT * 1000)
                return connection.read(), None

            monkeypatch.setattr(_channel, "_spin", never_in_time)
            c.read("/x")
            monkeypatch.setattr(_channel, "_spin", at_once)
            del spins[:]
            for _ in range(100):
                c.read("/x")
            assert spins == ["at once"] * 99


def test_waiting_for_events_never_spins(client, root, monkeypatch):
    """Spinning is for replies, which come within microseconds; an event
    may take any time, so a thread waiting for one sleeps at once."""
    from pyxs import _channel

    spins = []
    spin = _channel._spin

    def counted(connection, poll):
        spins.append(connection)
        return spin(connection, poll)

    monkeypatch.setattr(_channel, "_spin", counted)
    with client.monitor() as monitor:
        waiting = monitor._channel.connection
        monitor.watch(root, "s")
        del spins[:]
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "s")
        assert monitor.wait(timeout=0.1) is None
        client.write(root + "/x", "v")
        assert monitor.wait(timeout=TIMEOUT) == Event(root + "/x", "s")
        assert waiting not in spins
        # The count works: a call on that channel spins (unless earlier
        # spins that did not pay make it skip some).
        monitor._channel._spin_skips = 0
        monitor.watch(root + "/y", "s")
        assert spins[-1] is waiting


# The queue of events and the drainer.

def test_a_queue_of_n_events_holds_n(client, root):
    """max_queued_events=N keeps exactly N events: the rest are counted,
    and reported before the N are given."""
    limit, writes = 3, 5
    with client.monitor(max_queued_events=limit) as monitor:
        monitor.watch(root, "q")
        for i in range(writes):
            client.write("%s/%d" % (root, i), "v")
        # Nobody reads: the drainer queues what it can and counts the rest.
        channel = monitor._channel
        until(lambda: channel.dropped + len(channel.events) >= 1 + writes, "all the events")
        with pytest.raises(EventsDropped) as dropped:
            monitor.wait(timeout=TIMEOUT)
        assert dropped.value.count == 1 + writes - limit
        events = [monitor.wait(timeout=TIMEOUT) for _ in range(limit)]
        assert events == [Event(root, "q")] + [Event("%s/%d" % (root, i), "q")
                                               for i in range(limit - 1)]
        assert monitor.wait(timeout=0.1) is None


class SlowDrainerConnection(UnixSocketConnection):
    """A Unix socket connection whose reads take a while in the drainer
    thread (0.3 s, or until *hold* is set when one is given), and say when
    one has started and ended."""

    hold = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drainer_reading = threading.Event()
        self.drainer_done = threading.Event()

    def read(self):
        if not threading.current_thread().name.startswith("pyxs drainer"):
            return super().read()
        self.drainer_reading.set()
        if self.hold is None:
            time.sleep(0.3)
        else:
            assert self.hold.wait(60)
        try:
            return super().read()
        finally:
            self.drainer_done.set()


def test_a_zero_timeout_wait_takes_what_the_drainer_is_reading(xenstore, client, root):
    """wait(timeout=0) means "what has come", not "nothing": an event the
    drainer is reading as the wait starts is given, not left behind."""
    connection = SlowDrainerConnection(xenstore.socket_path, TIMEOUT)
    with Monitor(connection) as monitor:
        monitor.watch(root, "z")
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "z")
        client.write(root + "/x", "v")
        assert connection.drainer_reading.wait(TIMEOUT)
        assert monitor.wait(timeout=0) == Event(root + "/x", "z")


def test_a_wait_whose_time_is_up_returns_at_once(client, root):
    """A wait that has nothing to give returns when its timeout is up,
    not later: wait(timeout=0) only looks."""
    with client.monitor() as monitor:
        monitor.watch(root, "t")
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "t")
        start = time.monotonic()
        assert [monitor.wait(timeout=0) for _ in range(5)] == [None] * 5
        # Microseconds each; the bound only allows for a loaded machine.
        assert time.monotonic() - start < 2.5


def test_every_sleeping_waiter_is_woken_when_others_come_and_go(client, root):
    """Threads waiting on one monitor: while one reads, the others sleep,
    and a sleeper that gives up must not make the channel forget the
    ones still asleep (each is woken to read in turn)."""
    with client.monitor() as monitor:
        monitor.watch(root, "w")
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "w")
        channel = monitor._channel
        reader = InThread(monitor.wait, None, 60)
        until(lambda: channel._reader == "caller", "a thread reading", TIMEOUT)
        sleeper = InThread(monitor.wait, None, 60)
        until(lambda: channel._sleepers == 1, "a thread asleep", TIMEOUT)
        # A third waiter sleeps too, and gives up.
        assert monitor.wait(timeout=0.2) is None
        client.write(root + "/1", "v")
        first = reader.value()
        client.write(root + "/2", "v")
        second = sleeper.value(timeout=TIMEOUT)
        assert [first, second] == [Event(root + "/1", "w"), Event(root + "/2", "w")]


# Replies that come in pieces.

def test_a_reply_in_pieces_or_after_an_event_is_waited_for(server):
    """A read may bring part of a reply, or only a watch event: the caller
    reads on until its reply is whole, and never takes that for a
    timeout."""
    def script(peer):
        def answer(request):
            if request.op is Op.READ:
                reply = bytes(Packet(Op.READ, b"value", request.rq_id, request.tx_id))
                peer.event(b"/w/x", b"t")
                time.sleep(0.05)
                peer.send(reply[:10])
                time.sleep(0.05)
                peer.send(reply[10:])
            else:
                peer.answer(request)
        peer.serve(answer)

    with scripted_client(server(script)) as c:
        c.watch("/w", "t")
        assert c.read("/r") == "value"
        assert [c.wait(timeout=TIMEOUT) for _ in range(2)] == [Event("/w", "t"),
                                                                Event("/w/x", "t")]


# Closing while a reader is slow to let go.

def test_calls_wait_for_a_reader_slow_to_let_go_up_to_their_timeout(xenstore, client, root):
    """After a fault, the thread reading the connection closes it as it
    lets go.  A call meanwhile waits for that, up to the connection's
    timeout (then raises Timeout and says why), and works once it has."""
    connection = SlowDrainerConnection(xenstore.socket_path, 0.5)
    connection.hold = threading.Event()
    with Monitor(connection) as monitor:
        monitor.watch(root, "s")
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "s")
        client.write(root + "/x", "v")
        assert connection.drainer_reading.wait(TIMEOUT)
        # Closing cannot wait longer than the timeout for the drainer.
        monitor.close()
        told = "timed out waiting for the reader of %r to let go" % xenstore.socket_path
        for call in (monitor.connect, lambda: monitor.watch(root, "t")):
            with pytest.raises(Timeout) as timeout:
                call()
            assert str(timeout.value) == told
        connection.hold.set()
        assert connection.drainer_done.wait(TIMEOUT)
        monitor.watch(root, "t")
        assert monitor.wait(timeout=TIMEOUT) == Event(root, "t")


def test_a_channel_given_up_closes_its_descriptors():
    """Clients dropped without close() leave no descriptor open.  Counted
    in a child Python: in this process another test's threads may open or
    close descriptors between the two counts."""
    program = (
        "import gc, os, pyxs\n"
        "def open_descriptors():\n"
        "    gc.collect()\n"
        "    return len(os.listdir('/proc/self/fd'))\n"
        "before = open_descriptors()\n"
        "for _ in range(20):\n"
        "    pyxs.Client(unix_socket_path='/nonexistent/socket')\n"
        "print(open_descriptors() - before)\n")
    assert run_program(program) == (0, "0\n", "")
