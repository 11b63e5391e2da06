"""Differential tests: the emulator against Xen 4.17's real C xenstored.

Hypothesis generates programs of requests over three connections (node
operations with valid, relative and invalid paths, malformed payloads,
watches, transactions that conflict, permissions, domain and CONTROL
requests, unknown message types) and runs each program on both daemons
over raw sockets.  Every reply and every watch event must be identical,
byte for byte and in the same order: the emulator claims to reproduce
xenstored exactly, insertion-ordered directory listings, generation
counts and leaked errno values included.

Both daemons run for the whole module, so their generation counters and
their C errno must stay in step across examples: each example removes
what it created, with requests both daemons see.  After a failing
example both are restarted, so that shrinking starts from a clean slate.
"""

import contextlib
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyxs._internal import HEADER, Op
from pyxs.testing import XenStoreServer

from ..support import daemons, xen
from ..support.wire import Closed, RawConnection

pytestmark = pytest.mark.realdaemon

CONNECTIONS = 3
#: Generous bound on how long an aborting xenstored takes to exit.
DEATH_PATIENCE = 10.0
EXAMPLES = int(os.environ.get("PYXS_DIFF_EXAMPLES", "400"))

ABSOLUTE = ["/t", "/t/a", "/t/b", "/t/a/b", "/t/a/c", "/t/a/b/c"]
RELATIVE = ["t", "t/a", "t/b", "t/a/b", "t/a/b/c"]
INVALID = ["", "/t/", "//t", "/t//a", "t/", "/t/a b", "@introduceDomain", "@t",
           "/t/" + "x" * 2050, "/t/\xe9", "/t/a.b"]
SPECIAL = ["/", "/tool", "/tool/xenstored", "/local/domain/0"]
CLEANUP = [b"/t", b"/local/domain/0/t"]

paths = st.one_of(
    st.sampled_from(ABSOLUTE), st.sampled_from(ABSOLUTE),
    st.sampled_from(RELATIVE), st.sampled_from(INVALID), st.sampled_from(SPECIAL))
watch_paths = st.one_of(paths, st.sampled_from(["@releaseDomain", "@introduceDomain", "@x"]))
values = st.sampled_from([b"", b"v", b"value\x00with\xffbinary", b"x" * 300])
tokens = st.sampled_from(["tok", "t2", ""])
perm_entries = st.sampled_from(["n0", "b0", "r5", "w7", "r0x10", "b010", "r-1", "r 3",
                                "x1", "r", "r1x", "", "n99999999999"])
malforms = st.sampled_from([""] * 12 + ["extra", "nonul", "empty", "twonul"])
# Which transaction a request goes in: None for none, k for the k-th live
# one of its connection (none if there is none), or an id nobody has.
tx_choice = st.sampled_from([None, None, 0, 0, 1, 1, 2, "bogus"])
conn_index = st.sampled_from([0, 0, 0, 1, 1, 2])


def _step(kind, *args):
    return st.tuples(conn_index, st.just(kind), tx_choice, *args)


steps = st.one_of(
    _step("write", paths, values),
    _step("write", st.sampled_from(ABSOLUTE + RELATIVE), values),
    _step("read", paths, malforms),
    _step("mkdir", paths, malforms),
    _step("rm", paths, malforms),
    _step("directory", paths, malforms),
    _step("directory_part", paths, st.sampled_from(["0", "1", "2", "5", "99", "-1", "", "x"])),
    _step("get_perms", paths, malforms),
    _step("set_perms", paths, st.lists(perm_entries, max_size=3)),
    _step("watch", watch_paths, tokens),
    _step("watch", st.sampled_from(ABSOLUTE + RELATIVE + ["/"]), tokens),
    _step("unwatch", watch_paths, tokens),
    _step("start"),
    _step("start"),
    _step("start"),
    _step("end", st.sampled_from(["T", "T", "F", "X"])),
    _step("end", st.sampled_from(["T", "F"])),
    _step("end", st.just("T")),
    _step("reset_watches"),
    _step("reconnect"),
    _step("domain", st.sampled_from([
        (Op.GET_DOMAIN_PATH, "7"), (Op.GET_DOMAIN_PATH, "-1"),
        (Op.IS_DOMAIN_INTRODUCED, "0"), (Op.IS_DOMAIN_INTRODUCED, "9"),
        (Op.INTRODUCE, "5\0" "1\0" "1"), (Op.INTRODUCE, "0\0" "1\0" "1"),
        (Op.INTRODUCE, "5\0" "1\0" "0"), (Op.RELEASE, "5"), (Op.RELEASE, "0"),
        (Op.RESUME, "5"), (Op.SET_TARGET, "5\0" "0"), (Op.SET_TARGET, "0\0" "0")])),
    _step("control", st.sampled_from([
        ["print", "x"], ["help"], ["check"], ["foo"], ["quota"], ["quota-soft"],
        ["log", "off"], ["memreport"], ["live-update", "-a"], ["live-update", "-c", "x"],
        ["quota", "set", "nodes"], ["check", "x"], []])),
    _step("unknown", st.sampled_from([15, 16, 20, 23, 26, 100])),
)
programs = st.lists(steps, min_size=10, max_size=50)

# Programs aimed at transactions: connections 0 and 1 each run one
# transaction over a handful of paths while connection 2 changes things
# outside any, then both commit, in either order.
tx_paths = st.sampled_from(["/t", "/t/a", "/t/b", "/t/a/b", "t/a"])
tx_values = st.sampled_from([b"", b"1", b"2"])


def _tx_step(kind, *args):
    return st.tuples(st.sampled_from([0, 0, 1, 1, 2]), st.just(kind),
                     st.sampled_from([0, 0, 0, None]), *args)


tx_steps = st.one_of(
    _tx_step("write", tx_paths, tx_values),
    _tx_step("write", tx_paths, tx_values),
    _tx_step("read", tx_paths, st.just("")),
    _tx_step("directory", tx_paths, st.just("")),
    _tx_step("mkdir", tx_paths, st.just("")),
    _tx_step("rm", tx_paths, st.just("")),
    _tx_step("set_perms", tx_paths, st.sampled_from([["n0"], ["b0", "r1"]])),
    _tx_step("directory_part", tx_paths, st.just("0")),
    _tx_step("get_perms", tx_paths, st.just("")),
)


@st.composite
def tx_programs(draw):
    setup = draw(st.lists(st.tuples(st.just(2), st.just("write"), st.none(), tx_paths,
                                    tx_values), max_size=3))
    body = draw(st.lists(tx_steps, min_size=2, max_size=14))
    first = draw(st.sampled_from([0, 1]))
    watch = [(2, "watch", None, draw(st.sampled_from(["/", "/t/a", "t"])), "w")]
    starts = [(0, "start", None), (1, "start", None)]
    ends = [(first, "end", 0, "T"), (1 - first, "end", 0, "T")]
    return watch + setup + starts + body + ends




def _payload(kind, args):
    """The request for one step, identical for both daemons."""
    def text(value):
        return value.encode("utf-8") if isinstance(value, str) else value

    if kind == "write":
        return Op.WRITE, text(args[0]) + b"\0" + args[1]
    if kind in ("read", "mkdir", "rm", "directory", "get_perms"):
        op = {"read": Op.READ, "mkdir": Op.MKDIR, "rm": Op.RM,
              "directory": Op.DIRECTORY, "get_perms": Op.GET_PERMS}[kind]
        path, malform = text(args[0]), args[1]
        payload = {"": path + b"\0", "extra": path + b"\0x", "nonul": path,
                   "empty": b"", "twonul": path + b"\0\0"}[malform]
        return op, payload
    if kind == "directory_part":
        return Op.DIRECTORY_PART, text(args[0]) + b"\0" + text(args[1]) + b"\0"
    if kind == "set_perms":
        return Op.SET_PERMS, b"".join(text(x) + b"\0" for x in [args[0]] + list(args[1]))
    if kind in ("watch", "unwatch"):
        op = Op.WATCH if kind == "watch" else Op.UNWATCH
        return op, text(args[0]) + b"\0" + text(args[1]) + b"\0"
    if kind == "start":
        return Op.TRANSACTION_START, b"\0"
    if kind == "end":
        return Op.TRANSACTION_END, text(args[0]) + b"\0"
    if kind == "reset_watches":
        return Op.RESET_WATCHES, b""
    if kind == "domain":
        op, arg = args[0]
        return op, text(arg) + b"\0"
    if kind == "control":
        return Op.DEBUG, b"".join(text(x) + b"\0" for x in args[0])
    if kind == "unknown":
        return args[0], b""
    raise AssertionError(kind)


class Pair:
    """A real C xenstored and an emulator, kept in step."""

    def __init__(self, workdir_factory):
        self._factory = workdir_factory
        self.real = self.emu = None
        self.dirty = False
        self.requests = 0
        self._start()

    def _start(self):
        self.real = xen.require(daemons.start, "xenstored",
                                        self._factory.mktemp("xenstored"))
        self.emu = XenStoreServer().start()
        self.dirty = False

    def close(self):
        if self.real is not None:
            self.real.stop()
        if self.emu is not None:
            self.emu.stop()

    def restart(self):
        self.close()
        self._start()

    def connect(self):
        return [RawConnection(self.real.socket_path), RawConnection(self.emu.socket_path)]

    @contextlib.contextmanager
    def connections(self):
        """:data:`CONNECTIONS` pairs ``[real, emulator]`` of connections
        and the log of what is exchanged on them; closed afterwards (the
        pairs the list holds then)."""
        conns = [self.connect() for _ in range(CONNECTIONS)]
        try:
            yield conns, []
        finally:
            for both in conns:
                for conn in both:
                    conn.close()

    def clean_up(self, conns, log):
        """Remove what programs make, comparing the answers too."""
        for path in CLEANUP:
            self._exchange(conns, log, 0, Op.RM, path + b"\0", (0, 0))

    def run(self, program):
        """Run a program of :data:`steps` on both daemons."""
        if self.dirty:
            self.restart()
        self.dirty = True
        transactions = [[] for _ in range(CONNECTIONS)]
        with self.connections() as (conns, log):
            try:
                for index, kind, tx, *args in program:
                    if not self._step(conns, transactions, log, index, kind, tx, args):
                        # Both daemons refused to go on (see _exchange): the
                        # program ends here, and both restart for the next.
                        return
                self.clean_up(conns, log)
            except (AssertionError, Closed, OSError) as exc:
                tail = "" if self.real.alive() else "\nxenstored died:\n" + self.real.log_tail()
                raise AssertionError("%r%s\nprogram so far:\n%s"
                                     % (exc, tail, "\n".join(log))) from None
        self.dirty = False

    def compare(self, program):
        """Run a fixed program of ``(connection, op, payload, tx)``
        requests on both daemons; *tx* labels a transaction (0: none)."""
        with self.connections() as (conns, log):
            ids = {0: (0, 0)}
            for index, op, payload, tx in program:
                result = self._exchange(conns, log, index, op, payload, ids.get(tx, (tx, tx)))
                assert result is not None, \
                    "the emulator dropped the connection:\n" + "\n".join(log)
                if op == Op.TRANSACTION_START and result[0] == Op.TRANSACTION_START:
                    ids[tx] = (int(result[1][0][:-1]), int(result[1][1][:-1]))
            self.clean_up(conns, log)

    def _step(self, conns, transactions, log, index, kind, tx, args):
        if kind == "reconnect":
            for conn in conns[index]:
                conn.close()
            conns[index] = self.connect()
            transactions[index] = []
            log.append("%d: reconnect" % index)
            return
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
        result = self._exchange(conns, log, index, op, payload, ids)
        if result is None:
            return False
        rtype, reply = result
        if op == Op.TRANSACTION_START and rtype == Op.TRANSACTION_START:
            live.append((int(reply[0][:-1]), int(reply[1][:-1])))
        elif op == Op.TRANSACTION_END and ids in live and reply[0] != b"EINVAL\0":
            live.remove(ids)
        elif op == Op.RESET_WATCHES:
            del live[:]
        return True

    def _expect_abort(self, real, op, payload, tx_id):
        try:
            answer = real.request(op, payload, tx_id)
        except Closed:
            answer = None
        assert answer is None, \
            "the emulator dropped the connection, xenstored answered %r" % (answer,)
        deadline = time.monotonic() + DEATH_PATIENCE
        while self.real.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.real.returncode == -signal.SIGABRT, \
            "xenstored closed the connection without aborting (status %r):\n%s" \
            % (self.real.returncode, self.real.log_tail())

    def _exchange(self, conns, log, index, op, payload, ids):
        """Send one request to both daemons and compare everything they
        send back, on every connection.  Return (reply type, (real reply
        payload, emulator reply payload)), or None when the emulator
        dropped the connection, which it does where xenstored aborts: the
        real daemon is then checked to have died of that very request."""
        real, emu = conns[index]
        log.append("%d: op %d tx %s %r" % (index, op, ids, payload[:80]))
        self.requests += 1
        try:
            emu_events, emu_reply = emu.request(op, payload, ids[1])
        except Closed:
            log.append("   -> the emulator dropped the connection")
            self._expect_abort(real, op, payload, ids[0])
            log.append("   -> xenstored aborted")
            return None
        real_events, real_reply = real.request(op, payload, ids[0])
        log.append("   -> %r %r" % (real_events, real_reply))
        if op == Op.TRANSACTION_START and real_reply[0] == emu_reply[0] == Op.TRANSACTION_START:
            assert real_reply[1] == emu_reply[1]
        assert (emu_events, emu_reply) == (real_events, real_reply), \
            "emulator %r %r != xenstored %r %r" % (emu_events, emu_reply, real_events, real_reply)
        for other, (real_other, emu_other) in enumerate(conns):
            if other == index:
                continue
            real_seen, emu_seen = real_other.sync(), emu_other.sync()
            assert emu_seen == real_seen, "connection %d: emulator events %r != xenstored %r" \
                % (other, emu_seen, real_seen)
            if real_seen:
                log.append("   conn %d events %r" % (other, real_seen))
        assert real.request(Op.DIRECTORY_PART, b"/\0" b"0\0") == \
            emu.request(Op.DIRECTORY_PART, b"/\0" b"0\0")
        return real_reply[0], (real_reply[1], emu_reply[1])


def pair_fixture(pair_class):
    """A fixture giving a module's tests one *pair_class* (a
    :class:`Pair`), closed after them."""
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        holder = pair_class(tmp_path_factory)
        yield holder
        holder.close()
    return fixture


pair = pair_fixture(Pair)


def differential_settings(examples):
    """Hypothesis' settings for *examples* programs run on a shared pair
    of daemons (no deadline, no example database: each run starts
    afresh)."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def run_programs(pair, strategy, examples=EXAMPLES):
    """Run *examples* of Hypothesis' programs on both daemons; check that
    they really exercised them (a strategy gone wrong could make empty
    programs, a pair gone wrong could stop comparing)."""
    before = pair.requests

    @differential_settings(examples)
    @given(program=strategy)
    def check(program):
        pair.run(program)

    check()
    print("%d requests compared" % (pair.requests - before))
    assert pair.requests - before >= examples * 5


def test_random_programs_match_c_xenstored(pair):
    run_programs(pair, programs)


def test_random_transactions_match_c_xenstored(pair):
    run_programs(pair, tx_programs())


def test_emulator_drops_the_connection_where_xenstored_aborts(pair):
    """A malformed request while the daemon's errno is 0 (a WATCH just
    succeeded) makes xenstored abort; the emulator drops the connection,
    and the comparison checks that the real daemon did die of it."""
    try:
        with pair.connections() as (conns, log):
            assert pair._exchange(conns, log, 0, Op.WATCH, b"/\0t\0", (0, 0)) is not None
            assert pair._exchange(conns, log, 0, Op.READ, b"/tool\0junk", (0, 0)) is None
            assert not pair.real.alive()
    finally:
        pair.restart()


def test_big_directory_and_paging(pair):
    """Listings over 4096 bytes: E2BIG for DIRECTORY, pages of
    DIRECTORY_PART with the generation count, in and out of a
    transaction."""
    program = [(0, Op.WATCH, b"/t\0w\0", 0)]
    program += [(i % 2, Op.WRITE, b"/t/big/child%03d-%s\0v" % (i, b"x" * 20), 0)
                for i in range(170)]
    program += [(0, Op.DIRECTORY, b"/t/big\0", 0)]
    program += [(1, Op.DIRECTORY_PART, b"/t/big\0%d\0" % off, 0)
                for off in (0, 1, 3000, 4000, 4250, 4300, 4351, 9999)]
    program += [(2, Op.TRANSACTION_START, b"\0", 1),
                (2, Op.DIRECTORY_PART, b"/t/big\0" b"0\0", 1),
                (2, Op.WRITE, b"/t/big/zz\0", 1),
                (2, Op.DIRECTORY_PART, b"/t/big\0" b"4000\0", 1),
                (2, Op.RM, b"/t/big\0", 1),
                (0, Op.WRITE, b"/t/other\0v", 0),
                (2, Op.TRANSACTION_END, b"T\0", 1),
                (0, Op.RM, b"/t/big\0", 0)]
    pair.compare(program)


def test_transaction_conflicts(pair):
    """The cases xenstored's transaction code distinguishes: reads of
    missing nodes, parents looked at by writes, nodes first touched after
    someone else changed them, and events released at commit in the
    order the transaction first touched the nodes."""
    W, R, M, D, S = Op.WRITE, Op.READ, Op.MKDIR, Op.RM, Op.SET_PERMS
    program = [
        (2, Op.WATCH, b"/\0all\0", 0),
        (0, W, b"/t/x\0old", 0),
        (0, Op.TRANSACTION_START, b"\0", 1),
        (1, W, b"/t/x\0new", 0),
        (0, R, b"/t/x\0", 1),         # first touch after the change: sees it
        (0, W, b"/t/y\0v", 1),
        (0, Op.TRANSACTION_END, b"T\0", 1),   # OK
        (0, Op.TRANSACTION_START, b"\0", 2),
        (0, R, b"/t/missing\0", 2),
        (1, W, b"/t/missing\0now", 0),
        (0, W, b"/t/z\0v", 2),
        (0, Op.TRANSACTION_END, b"T\0", 2),   # EAGAIN: the missing node appeared
        (0, Op.TRANSACTION_START, b"\0", 3),
        (0, W, b"/t/n/deep/leaf\0v", 3),      # looks at /t/n, /t
        (1, W, b"/t/sibling\0v", 0),          # changes /t's children
        (0, Op.TRANSACTION_END, b"T\0", 3),   # EAGAIN
        (0, Op.TRANSACTION_START, b"\0", 4),
        (0, W, b"/t/e1/b\0v", 4),
        (0, W, b"/t/e0\0v", 4),
        (0, D, b"/t/x\0", 4),
        (0, S, b"/t/e1\0n0\0r3\0", 4),
        (0, M, b"/t/e2\0", 4),
        (0, D, b"/t/e2\0", 4),
        (0, Op.TRANSACTION_END, b"T\0", 4),   # events in first-touch order
        (0, Op.TRANSACTION_START, b"\0", 5),
        (0, Op.TRANSACTION_START, b"\0", 5),  # EBUSY
        (1, R, b"/t/y\0", 5),                 # ENOENT: not this connection's
        (0, Op.TRANSACTION_END, b"F\0", 5),
        (0, Op.TRANSACTION_END, b"F\0", 5),   # ENOENT: gone
    ]
    pair.compare(program)


def test_removal_events(pair):
    """RM of a subtree: one event for the root to watches above it, and
    one per removed node to watches exactly on it, children first."""
    program = [
        (0, Op.WRITE, b"/t/a/b/c\0", 0), (0, Op.WRITE, b"/t/a/d\0", 0),
        (0, Op.WRITE, b"/t/e\0", 0),
        (1, Op.WATCH, b"/\0root\0", 0), (1, Op.WATCH, b"/t/a/b\0exact\0", 0),
        (1, Op.WATCH, b"/t/a/b/c/none\0below\0", 0),
        (2, Op.WATCH, b"t\0rel\0", 0), (2, Op.WATCH, b"/t/a\0same\0", 0),
        (2, Op.WATCH, b"/t\0same\0", 0),
        (0, Op.RM, b"/t/a\0", 0),
        (0, Op.RM, b"/t/a\0", 0),
        (0, Op.RM, b"/t/a/b\0", 0),
        (0, Op.WRITE, b"t/r/s\0v", 0), (0, Op.RM, b"t\0", 0),
    ]
    pair.compare(program)


def test_malformed_requests_leak_errno(pair):
    """A one-argument request that is not exactly one string answers with
    the daemon's leftover errno: ENOENT after a miss, EINVAL after an
    invalid path, ENOMEM for MKDIR and RM when it holds ENOENT."""
    program = [
        (0, Op.READ, b"/t/none\0", 0), (0, Op.READ, b"/t\0x", 0),
        (0, Op.MKDIR, b"/t\0x", 0), (0, Op.RM, b"/t", 0),
        (0, Op.READ, b"bad path\0", 0), (0, Op.DIRECTORY, b"", 0),
        (0, Op.GET_PERMS, b"/t\0\0", 0), (0, Op.SET_PERMS, b"@nothing\0n0\0", 0),
        (0, Op.WRITE, b"/t/v\0x", 0), (0, Op.MKDIR, b"/t/v\0x", 0),
        (0, Op.TRANSACTION_END, b"T", 0),
    ]
    pair.compare(program)


def test_oversized_frame_drops_only_that_connection(pair):
    """A header announcing more than 4096 bytes: both daemons close that
    connection and keep serving the others, with the same errno after."""
    results = []
    for path in (pair.real.socket_path, pair.emu.socket_path):
        bad = RawConnection(path, timeout=5)
        good = RawConnection(path, timeout=5)
        bad.sock.sendall(b"\x02\0\0\0" + b"\0" * 8 + b"\x01\x10\0\0")
        with pytest.raises((Closed, ConnectionResetError)):
            bad.reply()
        results.append((good.call(Op.READ, b"/tool\0"), good.call(Op.READ, b"/tool\0x")))
        bad.close()
        good.close()
    assert results[0] == results[1]


def test_requests_before_an_oversized_frame_are_handled(pair):
    """A request and then, in the same write, a header announcing more
    than 4096 bytes: both daemons handle the request before they drop the
    connection."""
    results = []
    for path in (pair.real.socket_path, pair.emu.socket_path):
        bad = RawConnection(path, timeout=5)
        good = RawConnection(path, timeout=5)
        good.call(Op.RM, b"/t/before\0")
        bad.sock.sendall(HEADER.pack(Op.WRITE, 1, 0, 11) + b"/t/before\0v"
                         + HEADER.pack(Op.READ, 2, 0, 4097))
        with pytest.raises((Closed, ConnectionResetError)):
            while True:
                bad.reply()
        results.append(good.call(Op.READ, b"/t/before\0"))
        bad.close()
        good.close()
    assert results[0] == results[1] == (Op.READ, b"v")


def test_path_length_limits(pair):
    """2048 bytes, not counting a leading /local/domain/<n>/ (matched the
    way xenstored's sscanf matches it)."""
    program = []
    for path in (b"/t/" + b"a" * 2045, b"/t/" + b"a" * 2046,
                 b"/local/domain/0/t/" + b"b" * 2046, b"/local/domain/0/t/" + b"b" * 2047,
                 b"t/" + b"c" * 2046, b"t/" + b"c" * 2047,
                 b"/local/domain/-1/t/" + b"d" * 2046, b"/local/domain/123456/t/" + b"e" * 100,
                 b"/local/domain/00012/t/" + b"f" * 2046):
        program += [(0, Op.WRITE, path + b"\0v", 0), (0, Op.WATCH, path + b"\0w\0", 0),
                    (0, Op.READ, path + b"\0", 0)]
    program += [(0, Op.RM, b"/local/domain/-1\0", 0), (0, Op.RM, b"/local/domain/12\0", 0),
                (0, Op.RM, b"/local/domain/00012\0", 0)]
    pair.compare(program)


def test_overlong_events_are_dropped(pair):
    """An event whose path and token together exceed 4096 bytes is not
    sent at all; a shorter one on the same write is."""
    long_path = b"/t/" + b"p" * 2000
    program = [(1, Op.WATCH, b"/t\0" + b"k" * 2090 + b"\0", 0),
               (1, Op.WATCH, b"/t\0short\0", 0),
               (0, Op.WRITE, long_path + b"\0v", 0),
               (0, Op.WRITE, b"/t/q\0v", 0)]
    pair.compare(program)
