"""Unit tests of the emulator's state machine (pyxs.testing._store).

No I/O and no real daemon: requests go straight to a Store.  The
differential tests compare the privileged behaviour with C xenstored;
these tests pin down the rest, mostly what an unprivileged domain sees
(which the real daemon cannot show here, as no other domain can be
introduced without a hypervisor), following xenstored 4.17's sources.
"""

import weakref

import pytest

from pyxs._internal import Op, Packet
from pyxs.testing._store import Store

#: The StoreConnection each of a Store's connections stands for, so that
#: the events the Store sends to a connection reach its StoreConnection.
_OWNERS = weakref.WeakKeyDictionary()


class StoreConnection:
    """A connection to a Store, with helpers returning what came back."""

    def __init__(self, store, domid=0, socket=True):
        self.store = store
        self.conn = store.connect(domid, socket=socket)
        self.events = []
        _OWNERS[self.conn] = self

    def raw(self, op, payload, tx_id=0):
        out = self.store.handle(self.conn, Packet(op, payload, rq_id=7, tx_id=tx_id))
        reply = None
        for conn, packet in out:
            if packet.op == Op.WATCH_EVENT:
                _OWNERS[conn].events.append(packet.payload)
            else:
                assert conn is self.conn and reply is None
                assert packet.rq_id == 7 and packet.tx_id == tx_id
                reply = packet
        return reply

    def __call__(self, op, *args, tx_id=0, value=None):
        payload = b"".join(a.encode() + b"\0" for a in args)
        if value is not None:
            payload += value
        reply = self.raw(op, payload, tx_id)
        if reply.op == Op.ERROR:
            return reply.payload[:-1].decode()
        return reply.payload

    def write(self, path, value=b"", tx_id=0):
        return self(Op.WRITE, path, value=value, tx_id=tx_id)

    def take_events(self):
        events, self.events = self.events, []
        return [tuple(e.split(b"\0")[:2]) for e in events]


@pytest.fixture
def store():
    return Store()


@pytest.fixture
def dom0(store):
    return StoreConnection(store)


@pytest.fixture
def guest(store, dom0):
    """Domain 5's ring connection, with its home set up as a toolstack
    would: /local/domain/5 owned by the domain."""
    assert dom0(Op.MKDIR, "/local/domain/5") == b"OK\0"
    assert dom0(Op.SET_PERMS, "/local/domain/5", "n5", "r0") == b"OK\0"
    return StoreConnection(store, 5, socket=False)


# Basics.

def test_fresh_tree_is_that_of_a_fresh_xenstored(store, dom0):
    assert store.dump() == {"/": (b"", ["n0"]), "/tool": (b"", ["n0"]),
                            "/tool/xenstored": (b"", ["n0"])}
    assert dom0(Op.DIRECTORY_PART, "/", "0") == b"1\0tool\0\0"
    assert store.errno != 0


def test_write_creates_parents_with_inherited_permissions(dom0, store):
    assert dom0(Op.SET_PERMS, "/tool", "b0", "r4") == b"OK\0"
    assert dom0.write("/tool/a/b/c", b"v") == b"OK\0"
    assert store.dump()["/tool/a"] == (b"", ["b0", "r4"])
    assert store.dump()["/tool/a/b/c"] == (b"v", ["b0", "r4"])
    assert dom0(Op.DIRECTORY, "/tool") == b"xenstored\0a\0"


def test_values_are_bytes_exactly(dom0):
    value = bytes(range(256))
    assert dom0.write("/v", value) == b"OK\0"
    assert dom0(Op.READ, "/v") == value
    assert dom0.write("/v", b"") == b"OK\0"
    assert dom0(Op.READ, "/v") == b""


@pytest.mark.parametrize("path", ["", "/a/", "//a", "/a//b", "/a b", "/a.b", "@x",
                                  "/" + "x" * 2048, "x" * 2049])
def test_invalid_paths(dom0, path):
    assert dom0(Op.READ, path) == "EINVAL"
    assert dom0.write(path) == "EINVAL"


def test_path_length_limit_counts_from_the_domain_home(dom0):
    assert dom0.write("/" + "x" * 2047) == b"OK\0"
    assert dom0.write("/local/domain/0/" + "y" * 2048) == b"OK\0"
    assert dom0.write("/local/domain/0/" + "y" * 2049) == "EINVAL"
    assert dom0.write("z" * 2048) == b"OK\0"


def test_rm_semantics(dom0):
    dom0.write("/a/b/c")
    assert dom0(Op.RM, "/a/x") == b"OK\0"          # parent exists
    assert dom0(Op.RM, "/a/x/y") == "ENOENT"       # parent missing
    assert dom0(Op.RM, "/") == "EINVAL"
    assert dom0(Op.RM, "/a") == b"OK\0"
    assert dom0(Op.READ, "/a/b/c") == "ENOENT"


def test_mkdir_of_an_existing_node_fires_nothing(dom0):
    dom0.write("/a", b"keep")
    dom0(Op.WATCH, "/a", "t")
    dom0.take_events()
    assert dom0(Op.MKDIR, "/a") == b"OK\0"
    assert dom0.take_events() == []
    assert dom0(Op.READ, "/a") == b"keep"


def test_directory_e2big_and_parts(dom0):
    names = ["child-%04d-%s" % (i, "x" * 30) for i in range(120)]
    for name in names:
        dom0.write("/big/" + name)
    assert dom0(Op.DIRECTORY, "/big") == "E2BIG"
    listing, offset = [], 0
    while True:
        part = dom0(Op.DIRECTORY_PART, "/big", str(offset))
        gen, rest = part.split(b"\0", 1)
        assert int(gen) > 0
        if rest == b"\0":
            break
        assert len(part) <= 4096
        chunk = rest[:-1] if rest.endswith(b"\0\0") else rest
        listing += chunk.rstrip(b"\0").split(b"\0")
        offset += len(chunk.rstrip(b"\0")) + 1
        if rest.endswith(b"\0\0"):
            break
    assert [n.decode() for n in listing] == names


def test_unknown_and_client_only_types(dom0):
    for op in (15, 16, 20, 23, 26, 100, 65535):
        out = dom0.store.handle_raw(dom0.conn, op, 1, 0, b"")
        assert [p.payload for _, p in out] == [b"ENOSYS\0"]


# Watches.

def test_watch_fires_at_once_relative_and_absolute(dom0):
    assert dom0(Op.WATCH, "rel", "r") == b"OK\0"
    assert dom0(Op.WATCH, "/abs", "a") == b"OK\0"
    assert dom0(Op.WATCH, "@introduceDomain", "i") == b"OK\0"
    assert dom0.take_events() == [(b"rel", b"r"), (b"/abs", b"a"),
                                  (b"@introduceDomain", b"i")]
    assert dom0(Op.WATCH, "/abs", "a") == "EEXIST"
    dom0.write("rel/x/y")
    assert dom0.take_events() == [(b"rel/x/y", b"r")]
    assert dom0(Op.UNWATCH, "/local/domain/0/rel", "r") == b"OK\0"
    assert dom0(Op.UNWATCH, "rel", "r") == "ENOENT"


def test_events_go_to_every_watcher_writer_included(store, dom0):
    other = StoreConnection(store)
    dom0(Op.WATCH, "/", "mine")
    other(Op.WATCH, "/a", "theirs")
    dom0.take_events(), other.take_events()
    dom0.write("/a/b")
    assert dom0.take_events() == [(b"/a/b", b"mine")]
    assert other.take_events() == [(b"/a/b", b"theirs")]


def test_identical_events_in_one_answer_are_sent_once(dom0):
    dom0(Op.WATCH, "/a", "t")
    dom0(Op.WATCH, "/a/b", "t")
    dom0.take_events()
    dom0.write("/a/b")
    assert dom0.take_events() == [(b"/a/b", b"t")]


def test_transaction_events_wait_for_the_commit(dom0):
    dom0(Op.WATCH, "/", "w")
    dom0.take_events()
    tx = int(dom0(Op.TRANSACTION_START, "")[:-1])
    dom0.write("/x", tx_id=tx)
    assert dom0.take_events() == []
    assert dom0(Op.TRANSACTION_END, "T", tx_id=tx) == b"OK\0"
    assert dom0.take_events() == [(b"/x", b"w")]


# Transactions.

def test_transaction_ids_and_errors(dom0):
    assert dom0(Op.TRANSACTION_START, "") == b"1\0"
    assert dom0(Op.TRANSACTION_START, "") == b"2\0"
    assert dom0(Op.TRANSACTION_START, "", tx_id=1) == "EBUSY"
    assert dom0(Op.READ, "/", tx_id=9) == "ENOENT"
    assert dom0(Op.TRANSACTION_END, "Q", tx_id=1) == "EINVAL"   # still alive
    assert dom0(Op.TRANSACTION_END, "F", tx_id=1) == b"OK\0"
    assert dom0(Op.TRANSACTION_END, "F", tx_id=1) == "ENOENT"
    assert dom0(Op.TRANSACTION_START, "") == b"3\0"


def test_transaction_conflict_and_isolation(store, dom0):
    other = StoreConnection(store)
    dom0.write("/c", b"0")
    tx = int(dom0(Op.TRANSACTION_START, "")[:-1])
    assert dom0(Op.READ, "/c", tx_id=tx) == b"0"
    other.write("/c", b"1")
    assert dom0(Op.READ, "/c", tx_id=tx) == b"0"     # its own copy now
    dom0.write("/d", b"x", tx_id=tx)
    assert other(Op.READ, "/d") == "ENOENT"
    assert dom0(Op.TRANSACTION_END, "T", tx_id=tx) == "EAGAIN"
    assert other(Op.READ, "/d") == "ENOENT"


def test_reset_watches_inside_a_transaction_is_a_crash(dom0):
    tx = int(dom0(Op.TRANSACTION_START, "")[:-1])
    assert dom0.raw(Op.RESET_WATCHES, b"", tx_id=tx) is None
    assert dom0.conn.broken


def test_malformed_request_answers_with_the_leftover_errno(dom0):
    assert dom0(Op.READ, "/missing") == "ENOENT"
    assert dom0.raw(Op.READ, b"/tool\0x").payload == b"ENOENT\0"
    assert dom0.raw(Op.MKDIR, b"/tool\0x").payload == b"ENOMEM\0"
    assert dom0(Op.READ, "bad path") == "EINVAL"
    assert dom0.raw(Op.READ, b"/tool").payload == b"EINVAL\0"
    # A successful WATCH leaves errno at 0: the real daemon then sends
    # nothing and aborts.
    dom0(Op.WATCH, "/", "t")
    assert dom0.raw(Op.READ, b"") is None
    assert dom0.conn.broken


# Domains, control.

def test_domain_requests(store, dom0):
    assert dom0(Op.GET_DOMAIN_PATH, "12") == b"/local/domain/12\0"
    assert dom0(Op.GET_DOMAIN_PATH, "-1") == b"/local/domain/4294967295\0"
    assert dom0(Op.IS_DOMAIN_INTRODUCED, "0") == b"T\0"
    assert dom0(Op.IS_DOMAIN_INTRODUCED, "32752") == b"T\0"     # DOMID_SELF
    assert dom0(Op.IS_DOMAIN_INTRODUCED, "5") == b"F\0"
    assert dom0(Op.INTRODUCE, "5", "1", "1") == "ENOSYS"
    assert dom0(Op.INTRODUCE, "5", "1", "0") == "EINVAL"
    assert dom0(Op.INTRODUCE, "0", "1", "1") == b"OK\0"
    assert dom0(Op.RELEASE, "5") == "ENOENT"
    assert dom0(Op.RELEASE, "0") == "EINVAL"
    assert dom0(Op.RESUME, "5") == "ENOENT"
    assert dom0(Op.SET_TARGET, "5", "0") == "ENOENT"
    assert dom0(Op.SET_TARGET, "0", "0") == b"OK\0"


def test_control(dom0):
    assert dom0(Op.DEBUG, "print", "hi") == b"OK\0"
    assert dom0(Op.DEBUG, "nonsense") == "EINVAL"
    assert dom0(Op.DEBUG, "help").startswith(b"check\t\nlog\ton|off\n")
    assert b"nodes            :     1000 Nodes per domain" in dom0(Op.DEBUG, "quota")
    assert dom0(Op.DEBUG, "quota", "set", "nodes", "7") == b"OK\0"
    assert dom0.store.quotas["nodes"] == 7
    assert dom0(Op.DEBUG, "quota", "0").startswith(b"Domain 0:\nnodes           :        3\n")
    assert dom0(Op.DEBUG, "quota", "77") == "ENOENT"


# Unprivileged domains.

def test_guest_home_and_ownership(store, dom0, guest):
    assert guest.write("name", b"guest") == b"OK\0"
    assert guest(Op.READ, "/local/domain/5/name") == b"guest"
    assert guest(Op.GET_PERMS, "name") == b"n5\0r0\0"
    assert guest(Op.GET_DOMAIN_PATH, "5") == b"/local/domain/5\0"
    assert dom0(Op.IS_DOMAIN_INTRODUCED, "5") == b"T\0"


def test_guest_permissions(store, dom0, guest):
    assert guest.write("/outside") == "EACCES"
    assert guest(Op.READ, "/tool") == "EACCES"
    assert guest(Op.READ, "/tool/none") == "EACCES"     # existence hidden
    assert guest(Op.DIRECTORY, "/local/domain/5") == b""
    dom0.write("/shared/ro", b"r")
    dom0(Op.SET_PERMS, "/shared/ro", "n0", "r5")
    assert guest(Op.READ, "/shared/ro") == b"r"
    assert guest.write("/shared/ro", b"x") == "EACCES"
    dom0(Op.SET_PERMS, "/shared", "n0", "w5")
    assert guest.write("/shared/mine", b"m") == b"OK\0"
    assert guest(Op.GET_PERMS, "/shared/mine") == b"n5\0w5\0"
    assert guest(Op.SET_PERMS, "/shared/mine", "n0") == "EPERM"
    assert guest(Op.SET_PERMS, "/shared/mine", "b5") == b"OK\0"
    assert guest(Op.SET_PERMS, "/shared/ro", "n5") == "EACCES"


def test_guest_may_not_use_privileged_requests(guest):
    for op, args in ((Op.DEBUG, ["print", "x"]), (Op.INTRODUCE, ["6", "1", "1"]),
                     (Op.RELEASE, ["6"]), (Op.IS_DOMAIN_INTRODUCED, ["0"]),
                     (Op.RESUME, ["6"]), (Op.SET_TARGET, ["6", "0"])):
        assert guest(op, *args) == "EACCES"


def test_guest_watch_sees_only_readable_nodes(store, dom0, guest):
    guest(Op.WATCH, "/", "all")
    assert guest.take_events() == [(b"/", b"all")]
    dom0.write("/secret/x")
    assert guest.take_events() == []
    dom0.write("/local/domain/5/from-dom0")
    assert guest.take_events() == [(b"/local/domain/5/from-dom0", b"all")]


def test_guest_quotas(store, dom0, guest):
    dom0(Op.DEBUG, "quota", "set", "nodes", "4")
    assert [guest.write("n%d" % i) for i in range(5)] == [b"OK\0"] * 3 + ["ENOSPC"] * 2
    dom0(Op.DEBUG, "quota", "set", "watches", "2")
    assert [guest(Op.WATCH, "w%d" % i, "t") for i in range(4)] == [b"OK\0"] * 3 + ["E2BIG"]
    replies = [guest(Op.TRANSACTION_START, "") for _ in range(12)]
    assert replies[-1] == "ENOSPC" and all(r.endswith(b"\0") for r in replies[:-1])
    # A node's record (24-byte header, 8 bytes per permission, value,
    # children) must stay under 2048 bytes for a domain.
    assert guest.write("n0", b"x" * (2048 - 24 - 16 - 1)) == b"OK\0"
    assert guest.write("n0", b"x" * (2048 - 24 - 16)) == "ENOSPC"
    assert dom0.write("/local/domain/5/n0", b"x" * 3000) == b"OK\0"
    assert guest(Op.SET_PERMS, "n1", "n5", "r1", "r2", "r3", "r4", "r6") == "ENOSPC"


def test_release_removes_the_domain_and_its_nodes(store, dom0, guest):
    guest.write("data", b"d")
    dom0(Op.WATCH, "@releaseDomain", "gone")
    dom0(Op.WATCH, "/local/domain/5/data", "d")
    dom0.take_events()
    assert dom0(Op.RELEASE, "5") == b"OK\0"
    assert dom0.take_events() == [(b"/local/domain/5/data", b"d"), (b"@releaseDomain", b"gone")]
    assert guest.conn.closed
    assert dom0(Op.READ, "/local/domain/5/data") == "ENOENT"
    assert dom0(Op.IS_DOMAIN_INTRODUCED, "5") == b"F\0"
    assert dom0(Op.READ, "/local/domain/5") == "ENOENT"   # it owned that too
