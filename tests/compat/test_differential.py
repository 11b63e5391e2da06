"""pyxs._compat against Xen's own C extension xen.lowlevel.xs.

Every scenario below runs twice against the same real daemon (C
xenstored and OCaml oxenstored, see the ``real_daemon`` fixture): once
through ``xen.lowlevel.xs``, once through ``pyxs._compat``, and the logs
of outcomes -- values with their types, exceptions with their class
names and arguments, watch events with the identity of their tokens --
must be equal.  See tests/compat/harness.py for what is normalised.

Scenarios that change daemon-wide state (domains) or kill the daemon get
a fresh private daemon for each side instead.
"""

import threading
import time

import pytest

import pyxs
import pyxs._compat as compat

from ..support.xen_clients import open_handle
from .harness import SIDES, Recorder, differential

# Fixtures.


def in_sync(handle):
    """A round trip on *handle*.  XenStore sends a connection the events
    of every change it made before a request ahead of that request's
    reply, so once this returns they have all reached the handle: no need
    to sleep and hope."""
    handle.get_domain_path(0)


@pytest.fixture
def modules(xs_lowlevel):
    return {"real": xs_lowlevel, "pyxs": compat}


@pytest.fixture
def run(real_daemon, modules):
    """Run a scenario on both sides against the session's daemon."""
    def _run(scenario):
        return differential(scenario, modules, {side: real_daemon for side in SIDES})
    return _run


@pytest.fixture
def run_private(real_daemon, modules, start_daemon):
    """Run a scenario on both sides, each against a fresh daemon of the
    session daemon's kind (for scenarios that change the daemon itself)."""
    def _run(scenario):
        daemons = {side: start_daemon(real_daemon.kind) for side in SIDES}
        return differential(scenario, modules, daemons)
    return _run


class Token:
    """A token object that is equal to nothing but itself."""

    def __repr__(self) -> str:
        return "<Token>"


class EqualToken:
    """A token object equal to every other EqualToken (the modules must
    go by identity, not equality)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EqualToken)

    def __hash__(self) -> int:
        return 1


# The module's surface.


def test_namespace_matches(xs_lowlevel):
    public = lambda names: sorted(n for n in names if not n.startswith("_"))  # noqa: E731
    assert set(public(dir(xs_lowlevel))) <= set(public(dir(compat)))
    assert public(compat.__all__) == public(dir(xs_lowlevel))
    assert public(dir(compat.xs)) == public(dir(xs_lowlevel.xs))
    assert [c.__name__ for c in compat.Error.__mro__] == \
        [c.__name__ for c in xs_lowlevel.Error.__mro__]
    assert issubclass(compat.Error, RuntimeError)
    assert compat.xs.__name__ == xs_lowlevel.xs.__name__ == "xs"


def test_import_forms():
    from pyxs import xs
    assert xs is compat.xs
    assert "xs" in pyxs.__all__


def test_neither_can_be_subclassed(xs_lowlevel):
    for module in (xs_lowlevel, compat):
        with pytest.raises(TypeError, match="not an acceptable base type"):
            type("Sub", (module.xs,), {})


def test_handles_take_no_attributes(real_daemon, xs_lowlevel):
    for module in (xs_lowlevel, compat):
        handle = open_handle(module, real_daemon.socket_path)
        try:
            with pytest.raises(AttributeError):
                handle.anything = 1
        finally:
            handle.close()


# Opening.


def test_open(run, tmp_path):
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_bytes(b"")

    def scenario(rec: Recorder):
        rec.try_open("xs()")
        rec.try_open("xs(0)", 0)
        rec.try_open("xs(readonly=1)", readonly=1)
        rec.try_open("xs(readonly=True)", readonly=True)
        rec.try_open("xs(1, 2)", 1, 2)
        rec.try_open("xs(1, readonly=1)", 1, readonly=1)
        rec.try_open("xs(other=1)", other=1)
        rec.try_open("xs('x')", "x")
        rec.try_open("xs(None)", None)
        rec.try_open("xs(1.5)", 1.5)
        rec.try_open("xs(2**31)", 2 ** 31)
        rec.try_open("xs(2**70)", 2 ** 70)
        rec.try_open("no daemon", socket_path=str(tmp_path / "nothing-here"))
        rec.try_open("empty dir", socket_path=str(tmp_path))
        # libxenstore opens anything that is not a socket like a device...
        handle = rec.try_open("a plain file", socket_path=str(not_a_socket))
        if handle is not None:
            # ... and then reads end-of-file: EBADF, for good.
            rec.call("read from it", handle.read, "", "/tool")
            rec.call("read again", handle.read, "", "/tool")
            rec.call("fileno", lambda: handle.fileno() >= 0)
            rec.call("close", handle.close)
    run(scenario)


# Nodes.


def test_read_write_ls_mkdir_rm(run):
    def scenario(rec: Recorder):
        h = rec.open()
        root = rec.root
        rec.call("read missing", h.read, "", root + "/a")
        rec.call("ls missing", h.ls, "", root + "/a")
        rec.call("write str", h.write, "", root + "/a/b", "value")
        rec.call("read str", h.read, "", root + "/a/b")
        rec.call("read parent made by write", h.read, "", root + "/a")
        rec.call("write bytes", h.write, "", root + "/a/c", b"\x00\xff\x80binary")
        rec.call("read bytes", h.read, "", root + "/a/c")
        rec.call("write non-ascii str", h.write, "", root + "/a/d", "h\xe9\u20ac")
        rec.call("read non-ascii", h.read, "", root + "/a/d")
        rec.call("write NUL inside", h.write, "", root + "/a/e", "x\x00y")
        rec.call("read NUL inside", h.read, "", root + "/a/e")
        rec.call("write empty", h.write, "", root + "/a/f", "")
        rec.call("read empty", h.read, "", root + "/a/f")
        rec.call("write bytes subclass", h.write, "", root + "/a/g",
                 type("Bytes", (bytes,), {})(b"sub"))
        rec.call("read it", h.read, "", root + "/a/g")
        rec.call("ls", h.ls, "", root + "/a")
        rec.call("ls leaf", h.ls, "", root + "/a/b")
        rec.call("mkdir new", h.mkdir, "", root + "/m/n")
        rec.call("read mkdir'd", h.read, "", root + "/m/n")
        rec.call("mkdir existing keeps value", h.mkdir, "", root + "/a/b")
        rec.call("value kept", h.read, "", root + "/a/b")
        rec.call("rm leaf", h.rm, "", root + "/a/b")
        rec.call("rm it again", h.rm, "", root + "/a/b")
        rec.call("rm with missing parent", h.rm, "", root + "/x/y/z")
        rec.call("rm subtree", h.rm, "", root + "/a")
        rec.call("ls after rm", h.ls, "", root + "/a")
        rec.call("ls root", h.ls, "", root)
        rec.call("overwrite", h.write, "", root + "/m", "new")
        rec.call("read overwritten", h.read, "", root + "/m")
    run(scenario)


def test_relative_paths(run):
    def scenario(rec: Recorder):
        h = rec.open()
        rel = rec.rel
        rec.call("read missing", h.read, "", rel + "/x")
        rec.call("write", h.write, "", rel + "/x", "relative")
        rec.call("read", h.read, "", rel + "/x")
        rec.call("read it absolutely", h.read, "", "/local/domain/0/" + rel + "/x")
        rec.call("ls", h.ls, "", rel)
        rec.call("mkdir", h.mkdir, "", rel + "/y")
        rec.call("get_permissions", h.get_permissions, "", rel + "/y")
        rec.call("rm", h.rm, "", rel + "/x")
        rec.call("ls again", h.ls, "", rel)
    run(scenario)


def test_bad_paths(run):
    bad = ["", "/a/", "a/", "//a", "/a//b", "/a b", "/a.b", "/caf\xe9", "/a\tb",
           "/" + "x" * 3100, "x" * 2100, "/" + "y" * 4200]

    def scenario(rec: Recorder):
        h = rec.open()
        for path in bad:
            shown = path if len(path) < 40 else "%s...(%d)" % (path[:5], len(path))
            for name in ("read", "ls", "mkdir", "get_permissions", "rm"):
                rec.call("%s %r" % (name, shown), getattr(h, name), "", path)
            rec.call("write %r" % shown, h.write, "", path, "v")
            rec.call("set_permissions %r" % shown, h.set_permissions, "", path, [{"dom": 0}])
            rec.call("watch %r" % shown, h.watch, path, "token")
            rec.call("unwatch %r" % shown, h.unwatch, path, "token")
    run(scenario)


def test_special_paths(run_private):
    # oxenstored keeps "@" nodes in its tree, so each side gets its own daemon.
    def scenario(rec: Recorder):
        h = rec.open()
        for path in ("@introduceDomain", "@releaseDomain", "@other", "@"):
            for name in ("read", "ls", "get_permissions"):
                rec.call("%s %r" % (name, path), getattr(h, name), "", path)
            rec.call("write %r" % path, h.write, "", path, "v")
            rec.call("mkdir %r" % path, h.mkdir, "", path)
            rec.call("set_permissions %r" % path, h.set_permissions, "", path,
                     [{"dom": 0, "read": 1}])
            rec.call("get_permissions %r after" % path, h.get_permissions, "", path)
            rec.call("read %r after" % path, h.read, "", path)
            rec.call("rm %r" % path, h.rm, "", path)
            rec.call("read %r after rm" % path, h.read, "", path)
        rec.call("ls /", h.ls, "", "/")
    run_private(scenario)


def test_size_limits(run):
    def scenario(rec: Recorder):
        h = rec.open()
        path = rec.root + "/big"
        room = 4096 - len(path) - 1  # payload: path, NUL, value
        rec.call("write exactly the limit", h.write, "", path, "v" * room)
        rec.call("read it", lambda: len(h.read("", path)))
        rec.call("write one byte over", h.write, "", path, "v" * (room + 1))
        rec.call("still the old value", lambda: len(h.read("", path)))
        long_path = rec.root + "/" + "p" * 4100
        for name in ("read", "ls", "mkdir", "rm", "get_permissions"):
            rec.call(name + " of a path over the limit", getattr(h, name), "", long_path)
        rec.call("watch of a path over the limit", h.watch, long_path, 1)
        many = [{"dom": i, "read": 1} for i in range(1000, 1700)]  # 4200 bytes
        rec.call("set_permissions over the limit", h.set_permissions, "", path, many)
    run(scenario)


def test_large_directory(run):
    # C xenstored answers E2BIG and both modules page with DIRECTORY_PART;
    # oxenstored 4.17 sends one frame over the 4096-byte limit instead,
    # which both modules take as a broken connection (EBADF from then on).
    def scenario(rec: Recorder):
        h = rec.open()
        for i in range(150):
            h.write("", "%s/dir/%04d-%s" % (rec.root, i, "n" * 40), "")
        listing = rec.call("ls of a listing over 4096 bytes", h.ls, "", rec.root + "/dir")
        rec.note("its length", len(listing or ()))
        th = rec.start("start", h)
        rec.call("ls inside a transaction", lambda: len(h.ls(th, rec.root + "/dir")))
        rec.call("end", h.transaction_end, th)
    run(scenario)


# Arguments the C parser refuses.


def test_argument_checking(run):
    class Str(str):
        pass

    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/node"
        h.write("", p, "v")
        calls = [
            ("read", ("",), {}), ("read", ("", p, "x"), {}), ("read", (), {}),
            ("read", ("", p), {"x": 1}), ("read", (), {"transaction": "", "path": p}),
            ("read", (None, p), {}), ("read", (1, p), {}), ("read", (True, p), {}),
            ("read", (b"", p), {}), ("read", ("", b"/x"), {}), ("read", ("", None), {}),
            ("read", ("", 5), {}), ("read", ("", "/a\x00b"), {}),
            ("read", ("", "/a\udcff"), {}), ("read", ("\udcff", p), {}),
            ("read", ("\x00", p), {}), ("read", (Str(""), Str(p)), {}),
            ("read", ("", bytearray(b"/x")), {}),
            ("write", ("", p), {}), ("write", ("", p, None), {}), ("write", ("", p, 5), {}),
            ("write", ("", p, 1.5), {}), ("write", ("", p, bytearray(b"x")), {}),
            ("write", ("", p, memoryview(b"x")), {}), ("write", ("", p, ["x"]), {}),
            ("write", ("", p, "\udcff"), {}), ("write", (0.0, p, "x"), {}),
            ("write", ("", p, "x"), {"data": "y"}),
            ("ls", ("",), {}), ("ls", ("", 1), {}), ("mkdir", ("", None), {}),
            ("rm", (), {}), ("rm", ("", p, p), {}),
            ("get_permissions", ("",), {}), ("get_permissions", ("", 1), {}),
            ("set_permissions", ("", p), {}), ("set_permissions", ("", 5, []), {}),
            ("watch", (p,), {}), ("watch", (b"/x", 1), {}), ("watch", (None, 1), {}),
            ("watch", (p, 1, 2), {}), ("watch", (), {"path": p, "token": 1}),
            ("unwatch", (p,), {}), ("unwatch", (1, 1), {}),
            ("read_watch", (1,), {}), ("read_watch", (), {"x": 1}),
            ("check_watch", (None,), {}), ("fileno", (1, 2), {}),
            ("transaction_start", (1,), {}), ("transaction_start", (), {"x": 1}),
            ("transaction_end", (), {}), ("transaction_end", (1,), {}),
            ("transaction_end", ("1", 1, 2), {}), ("transaction_end", ("1",), {"bad": 1}),
            ("transaction_end", ("1",), {"transaction": "2"}),
            ("transaction_end", (), {"abort": 1}), ("transaction_end", ("1", "x"), {}),
            ("transaction_end", ("1", 1.0), {}), ("transaction_end", ("1", 2 ** 40), {}),
            ("transaction_end", ("1", 2 ** 70), {}), ("transaction_end", ("1", None), {}),
            ("transaction_end", (), {"transaction": 5}),
            ("transaction_end", ("1",), {"abort": 1, "x": 2}),
            ("introduce_domain", (1, 2), {}), ("introduce_domain", ("1", 2, 3), {}),
            ("introduce_domain", (1, 2 ** 64, 3), {}), ("introduce_domain", (1, 2, 2 ** 31), {}),
            ("introduce_domain", (), {"dom": 1, "page": 2, "port": 3}),
            ("set_target", (1,), {}), ("set_target", (1, "2"), {}),
            ("set_target", (1, 2.0), {}),
            ("resume_domain", (), {}), ("resume_domain", (None,), {}),
            ("release_domain", (1, 2), {}), ("release_domain", (2 ** 31,), {}),
            ("release_domain", (-2 ** 31 - 1,), {}),
            ("get_domain_path", (), {}), ("get_domain_path", ("0",), {}),
            ("get_domain_path", (0.5,), {}), ("get_domain_path", (2 ** 63,), {}),
            ("get_domain_path", (0,), {"x": 1}),
            ("close", (1,), {}), ("close", (), {"x": 1}),
        ]
        for name, args, kwargs in calls:
            rec.call("%s%r%r" % (name, args, kwargs), getattr(h, name), *args, **kwargs)
        rec.call("value untouched", h.read, "", p)
    run(scenario)


def test_set_permissions_entries(run):
    class Dict(dict):
        def get(self, *args):
            raise AssertionError("not used by the C code")

    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/perm"
        h.write("", p, "")
        entries = [
            ({"dom": 0},), ({"dom": 0, "read": 1},), ({"dom": 0, "read": 1, "write": 1},),
            ({"dom": 5},), ({"dom": 5, "read": 1},), ({"dom": 5, "write": 1},),
            ({"dom": 5, "read": True, "write": True},),
            ({"dom": 0}, {"dom": 5, "read": 1}, {"dom": 6, "write": 7}),
            ({"dom": 3, "read": 1}, {"dom": 4}),
            ({"dom": 0}, {"dom": -1, "read": 1}), ({"dom": 0}, {"dom": 70000, "write": 1}),
            ({"dom": 0}, {"dom": 2 ** 31 - 1}), ({"dom": 0, "read": 0, "write": 0},),
            ({"dom": 0, "read": -1},),
            (Dict(dom=0, read=1), Dict(dom=9, write=1)),
            # refused by the argument parser:
            ({"read": 1},), ({"dom": "0"},), ({"dom": None},), ({"dom": 1.0},),
            ({"dom": 0, "read": "x"},), ({"dom": 2 ** 31},), ({"dom": -2 ** 31 - 1},),
            ({"dom": 2 ** 64},), ({"dom": 0, "other": 1},), ({"dom": 0, 5: 1},),
            ({"dom": 0, "read": 1, "write": 1, "x": 1},), ({"dom": "x", "other": 1},),
            ({"dom": 0}, 5), (["dom", 0],), (None,),
        ]
        for perms in entries:
            rec.call("set %r" % (perms,), h.set_permissions, "", p, list(perms))
            rec.call("get after %r" % (perms,), h.get_permissions, "", p)
        rec.call("empty list", h.set_permissions, "", p, [])
        rec.call("a tuple", h.set_permissions, "", p, ({"dom": 0},))
        rec.call("a dict", h.set_permissions, "", p, {"dom": 0})
        rec.call("None", h.set_permissions, "", p, None)
        rec.call("a list subclass", h.set_permissions, "", p,
                 type("L", (list,), {})([{"dom": 0, "read": 1}]))
        rec.call("get", h.get_permissions, "", p)
        rec.call("get missing", h.get_permissions, "", rec.root + "/none")
        rec.call("set missing", h.set_permissions, "", rec.root + "/none", [{"dom": 0}])
        rec.call("get @introduceDomain", h.get_permissions, "", "@introduceDomain")
        rec.call("get @releaseDomain", h.get_permissions, "", "@releaseDomain")
        rec.call("children inherit", h.write, "", p + "/child", "")
        rec.call("child's", h.get_permissions, "", p + "/child")
    run(scenario)


def test_permissions_bind_other_connections(run):
    # A permission round trip only means something if the daemon enforces
    # it: set_target lets nothing else in, but a watch sees the change.
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/w"
        h.write("", p, "")
        token = rec.token("t", Token())
        h.watch(p, token)
        rec.next_event("registration", h)
        rec.call("set_permissions", h.set_permissions, "", p, [{"dom": 7, "read": 1}])
        rec.next_event("set_permissions fires the watch", h)
        rec.call("get", h.get_permissions, "", p)
    run(scenario)


# Transactions.


def start_beside_a_rival(rec: Recorder, name: str):
    """Open two handles, write "0" at ``<root>/<name>/v``, and start a
    transaction on the first handle; return the handles, the path
    ``<root>/<name>`` and the transaction."""
    h = rec.open()
    other = rec.open()
    p = rec.root + name
    h.write("", p + "/v", "0")
    return h, other, p, rec.start("start", h)


def test_transactions(run):
    def scenario(rec: Recorder):
        h, other, p, th = start_beside_a_rival(rec, "/tx")
        rec.call("read inside", h.read, th, p + "/v")
        rec.call("write inside", h.write, th, p + "/v", "1")
        rec.call("new node inside", h.write, th, p + "/n", "new")
        rec.call("mkdir inside", h.mkdir, th, p + "/d")
        rec.call("rm inside", h.rm, th, p + "/gone")
        rec.call("ls inside", h.ls, th, p)
        rec.call("perms inside", h.get_permissions, th, p + "/n")
        rec.call("set perms inside", h.set_permissions, th, p + "/n", [{"dom": 0, "read": 1}])
        rec.call("outside sees old", h.read, "", p + "/v")
        rec.call("outside does not see new", h.read, "", p + "/n")
        rec.call("other connection sees old", other.read, "", p + "/v")
        rec.call("commit", h.transaction_end, th)
        rec.call("committed", h.read, "", p + "/v")
        rec.call("committed new", h.read, "", p + "/n")
        rec.call("committed perms", h.get_permissions, "", p + "/n")
        rec.call("end it again", h.transaction_end, th)
        rec.call("use it after the end", h.read, th, p + "/v")

        th = rec.start("start to abort", h)
        rec.call("write", h.write, th, p + "/v", "2")
        rec.call("abort", h.transaction_end, th, 1)
        rec.call("aborted", h.read, "", p + "/v")
        th = rec.start("abort by keyword", h)
        rec.call("abort=True", h.transaction_end, transaction=th, abort=True)
        th = rec.start("abort=2", h)
        rec.call("abort=2", h.transaction_end, th, 2)
        th = rec.start("abort=0 commits", h)
        rec.call("write", h.write, th, p + "/v", "3")
        rec.call("end(abort=0)", h.transaction_end, th, abort=0)
        rec.call("committed", h.read, "", p + "/v")

        first = rec.start("two at once: first", h)
        second = rec.start("two at once: second", h)
        rec.call("write in first", h.write, first, p + "/a", "first")
        rec.call("second does not see it", h.read, second, p + "/a")
        rec.call("end first", h.transaction_end, first)
        rec.call("end second", h.transaction_end, second)
    run(scenario)


def test_transaction_conflicts(run):
    def scenario(rec: Recorder):
        h, other, p, th = start_beside_a_rival(rec, "/conflict")
        rec.call("read", h.read, th, p + "/v")
        rec.call("someone else writes", other.write, "", p + "/v", "other")
        rec.call("write", h.write, th, p + "/v", "mine")
        rec.call("commit conflicts", h.transaction_end, th)
        rec.call("nothing committed", h.read, "", p + "/v")
        rec.call("the transaction is gone", h.transaction_end, th)

        th = rec.start("conflict on a node that did not exist", h)
        rec.call("read missing", h.read, th, p + "/new")
        rec.call("someone else creates it", other.write, "", p + "/new", "x")
        rec.call("write something else", h.write, th, p + "/elsewhere", "y")
        rec.call("commit conflicts", h.transaction_end, th)
        rec.call("not written", h.read, "", p + "/elsewhere")

        th = rec.start("abort while conflicting", h)
        rec.call("read", h.read, th, p + "/v")
        other.write("", p + "/v", "again")
        rec.call("abort is fine", h.transaction_end, th, 1)

        th = rec.start("retry loop", h)
        rec.call("read", h.read, th, p + "/v")
        other.write("", p + "/v", "interference")
        rec.call("write", h.write, th, p + "/v", "retry")
        rec.call("first attempt conflicts", h.transaction_end, th)
        th = rec.start("second attempt", h)
        rec.call("read", h.read, th, p + "/v")
        rec.call("write", h.write, th, p + "/v", "retry")
        rec.call("second attempt commits", h.transaction_end, th)
        rec.call("result", h.read, "", p + "/v")
    run(scenario)


def test_transaction_handles(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/handles"
        h.write("", p, "plain")
        # Handles the C code reads as "no transaction" or as some number.
        for th in ("", "0", "zz", "g1", "  0", "0x0", "-0", "+0", "\u00e90"):
            rec.call("read with %r" % th, h.read, th, p)
        for th in ("77", "7fffffff", "-1", "FFFFFFFFFFFFFFFFFFFFFF", "1" * 40, "0x77 "):
            for name in ("read", "ls", "mkdir", "rm", "get_permissions"):
                rec.call("%s with %r" % (name, th), getattr(h, name), th, p)
            rec.call("write with %r" % th, h.write, th, p, "x")
            rec.call("set_permissions with %r" % th, h.set_permissions, th, p, [{"dom": 0}])
            rec.call("transaction_end with %r" % th, h.transaction_end, th)
        rec.call("transaction_end of none", h.transaction_end, "")
        rec.call("transaction_end of none, abort", h.transaction_end, "", 1)
        th = rec.start("a real one", h)
        for variant in (th.lower(), " " + th, "0x" + th, th + "zz", "+" + th):
            rec.call("read with a variant", h.read, variant, p)
        rec.call("end with 0x form", h.transaction_end, "0x" + th)
        for _ in range(12):  # Ids beyond 9, to see the hexadecimal.
            h.transaction_end(h.transaction_start(), 1)
        th = rec.start("a later one", h)
        rec.call("lower-case works", h.transaction_end, th.lower(), True)
        rec.call("value untouched", h.read, "", p)
    run(scenario)


# Watches.


def test_watch_events_and_tokens(run):
    def scenario(rec: Recorder):
        h = rec.open()
        writer = rec.open()
        p = rec.root + "/watched"
        tokens = [("int", 12345), ("str", "a string"), ("tuple", (1, "two")),
                  ("object", Token()), ("None", None), ("float", 2.5), ("list", [1])]
        for i, (label, token) in enumerate(tokens):
            rec.token(label, token)
            rec.call("watch with %s" % label, h.watch, "%s/%d" % (p, i), token)
            rec.next_event("registration of %s" % label, h)
        for i, (label, _) in enumerate(tokens):
            writer.write("", "%s/%d/leaf" % (p, i), label)
            rec.next_event("change under the %s watch" % label, h)
        rec.readable("nothing left", h, 0.3)
        rec.call("check_watch with nothing", h.check_watch)
        for i, (label, token) in enumerate(tokens):
            rec.call("unwatch %s" % label, h.unwatch, "%s/%d" % (p, i), token)
        writer.write("", p + "/0/leaf", "after")
        rec.readable("no event after unwatch", h, 0.3)
    run(scenario)


def test_tokens_go_by_identity(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/identity"
        first = rec.token("first tuple", (1, 2))
        equal = rec.token("equal tuple", tuple([1, 2]))
        rec.call("watch with a tuple", h.watch, p, first)
        rec.next_event("registration", h)
        rec.call("same path, an equal tuple: another watch", h.watch, p, equal)
        rec.next_event("its registration", h)
        rec.call("same path, the same tuple: EEXIST", h.watch, p, first)
        rec.call("unwatch with an equal object", h.unwatch, p, tuple([1, 2]))
        a, b = rec.token("A", EqualToken()), rec.token("B", EqualToken())
        rec.call("watch A", h.watch, p + "/x", a)
        rec.next_event("A's registration", h)
        rec.call("watch B", h.watch, p + "/x", b)
        rec.next_event("B's registration", h)
        h.write("", p + "/x", "1")
        rec.next_event("event 1", h)
        rec.next_event("event 2", h)
        rec.next_event("event 3", h)
        rec.next_event("event 4", h)
        rec.call("unwatch A", h.unwatch, p + "/x", a)
        rec.call("unwatch B", h.unwatch, p + "/x", b)
        rec.call("unwatch first", h.unwatch, p, first)
        rec.call("unwatch equal", h.unwatch, p, equal)
    run(scenario)


def test_one_token_on_two_paths(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/two"
        token = rec.token("T", Token())
        rec.call("watch a", h.watch, p + "/a", token)
        rec.call("watch b", h.watch, p + "/b", token)
        rec.next_event("registration 1", h)
        rec.next_event("registration 2", h)
        h.write("", p + "/a/x", "1")
        h.write("", p + "/b/x", "1")
        rec.next_event("a/x", h)
        h.write("", p + "/a/y", "1")
        in_sync(h)
        rec.call("unwatch a", h.unwatch, p + "/a", token)
        # Queued events of a removed watch are still handed out while the
        # token object is in use by another watch (no unwatch filter).
        rec.next_event("b/x", h)
        rec.next_event("a/y, queued before the unwatch", h)
        h.write("", p + "/a/z", "1")
        h.write("", p + "/b/z", "1")
        rec.next_event("only b/z", h)
        rec.call("unwatch b", h.unwatch, p + "/b", token)
        rec.readable("nothing left", h, 0.3)
    run(scenario)


def test_stale_events(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/stale"
        token = rec.token("T", Token())
        rec.call("watch", h.watch, p, token)
        rec.next_event("registration", h)
        h.write("", p + "/x", "1")
        h.write("", p + "/y", "1")
        rec.readable("events on their way", h, 5)
        in_sync(h)
        rec.call("unwatch", h.unwatch, p, token)
        rec.readable("still readable: the events stay queued", h, 0)
        rec.event("check_watch of a stale event raises EAGAIN", h.check_watch)
        rec.event("and drops it: the next one too", h.check_watch)
        rec.readable("now empty", h, 0)
        rec.call("check_watch", h.check_watch)

        # read_watch skips stale events instead.
        other = rec.token("U", Token())
        h.watch(p, token)
        rec.next_event("registration again", h)
        h.write("", p + "/z", "1")
        rec.readable("event on its way", h, 5)
        in_sync(h)
        h.unwatch(p, token)
        rec.call("watch with another token", h.watch, p + "/w", other)
        rec.event("read_watch skips the stale event", h.read_watch)
    run(scenario)


def test_failed_unwatch_forgets_the_token(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/forget"
        token = rec.token("T", Token())
        rec.call("watch", h.watch, p, token)
        rec.next_event("registration", h)
        rec.call("unwatch of an unknown path fails", h.unwatch, p + "/other", token)
        h.write("", p, "changed")
        # The C extension let go of the token anyway: the event that the
        # still-registered watch brings is now "stale".
        rec.readable("event arrives", h, 5)
        rec.event("and cannot be matched", h.check_watch)
        rec.call("the watch itself still exists", h.unwatch, p, token)
        # A failed watch lets go of a reference too, but it took one first.
        rec.call("register", h.watch, p, token)
        rec.next_event("registration", h)
        rec.call("register again: EEXIST", h.watch, p, token)
        h.write("", p, "changed again")
        rec.readable("event arrives", h, 5)
        rec.event("and is matched: one reference is left", h.check_watch)
    run(scenario)


def test_watch_paths(run):
    def scenario(rec: Recorder):
        h = rec.open()
        writer = rec.open()
        rel = rec.rel
        t = rec.token("t", Token())
        rec.call("relative watch", h.watch, rel, t)
        rec.next_event("registration, relative", h)
        writer.write("", rel + "/x", "1")
        rec.next_event("event path relative too", h)
        writer.write("", "/local/domain/0/" + rel + "/y", "1")
        rec.next_event("also for an absolute write", h)
        rec.call("unwatch", h.unwatch, rel, t)
        for special in ("@introduceDomain", "@releaseDomain", "@somethingElse"):
            rec.call("watch " + special, h.watch, special, t)
            rec.next_event("registration of " + special, h)
            rec.call("unwatch " + special, h.unwatch, special, t)
        rec.call("watch a missing node", h.watch, rec.root + "/nothing/here", t)
        rec.next_event("registration", h)
        writer.write("", rec.root + "/nothing/here/deep", "1")
        rec.next_event("created below", h)
        writer.rm("", rec.root + "/nothing")
        rec.next_event("removed", h)
        rec.call("unwatch", h.unwatch, rec.root + "/nothing/here", t)
        rec.call("watch /", h.watch, "/", t)
        rec.next_event("registration of /", h)
        rec.call("unwatch /", h.unwatch, "/", t)
        rec.readable("nothing left", h, 0.3)
    run(scenario)


def test_watch_and_transactions(run):
    def scenario(rec: Recorder):
        h = rec.open()
        watcher = rec.open()
        p = rec.root + "/txwatch"
        t = rec.token("t", Token())
        watcher.watch(p, t)
        rec.next_event("registration", watcher)
        th = rec.start("start", h)
        h.write(th, p + "/a", "1")
        h.write(th, p + "/b", "1")
        rec.readable("no event before the commit", watcher, 0.3)
        rec.call("commit", h.transaction_end, th)
        rec.next_event("first", watcher)
        rec.next_event("second", watcher)
        th = rec.start("start", h)
        h.write(th, p + "/c", "1")
        rec.call("abort", h.transaction_end, th, 1)
        rec.readable("no event after an abort", watcher, 0.3)
        h.rm("", p)
        rec.next_event("rm", watcher)
    run(scenario)


def test_own_writes_are_seen(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/own"
        t = rec.token("t", Token())
        h.watch(p, t)
        rec.event("read_watch: registration", h.read_watch)
        rec.call("write", h.write, "", p, "x")
        rec.event("read_watch: own write", h.read_watch)
        rec.call("mkdir existing: no event", h.mkdir, "", p)
        rec.call("write again", h.write, "", p + "/c", "x")
        rec.event("read_watch: child", h.read_watch)
    run(scenario)


def test_fileno_follows_the_queue(run):
    def scenario(rec: Recorder):
        h = rec.open()
        writer = rec.open()
        p = rec.root + "/fileno"
        fd = rec.fileno("fileno before any watch", h)
        rec.call("same descriptor each time", lambda: h.fileno() == fd)
        rec.readable("not readable without watches", h, 0.2)
        t = rec.token("t", Token())
        h.watch(p, t)
        rec.readable("readable once the registration event is in", h, 5)
        rec.readable("and stays so until it is taken", h, 0.1)
        rec.event("take it", h.check_watch)
        rec.readable("then not readable", h, 0.2)
        # Events that arrive while nobody calls anything wake select().
        for i in range(3):
            writer.write("", "%s/%d" % (p, i), "x")
        rec.readable("readable when changes come", h, 5)
        in_sync(h)
        for i in range(3):
            rec.readable("readable before event %d" % i, h, 0)
            rec.event("event %d" % i, h.check_watch)
        rec.readable("empty again", h, 0.2)
        # Events read in passing, during another request, count too.
        writer.write("", p + "/9", "x")
        in_sync(h)
        rec.call("an unrelated read", h.read, "", p + "/9")
        rec.readable("readable after it", h, 0)
        rec.event("the event", h.check_watch)
        rec.readable("empty", h, 0.2)
    run(scenario)


def test_fileno_made_after_events_queued(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/late"
        t = rec.token("t", Token())
        h.watch(p, t)
        h.read("", p)  # Takes in the registration event, if not there yet.
        rec.fileno("first fileno", h)
        rec.readable("already readable", h, 0)
        rec.event("event", h.check_watch)
        rec.readable("then not", h, 0.2)
    run(scenario)


def test_read_watch_blocks_until_an_event(run):
    def scenario(rec: Recorder):
        h = rec.open()
        writer = rec.open()
        p = rec.root + "/blocking"
        t = rec.token("t", Token())
        h.watch(p, t)
        rec.event("registration", h.read_watch)
        timer = threading.Timer(0.3, writer.write, ("", p + "/later", "x"))
        # Timed from before the timer starts: the write comes 0.3 s after
        # that at the earliest, however late this thread runs.
        started = time.monotonic()
        timer.start()
        try:
            rec.event("read_watch waits for the change", h.read_watch)
            rec.note("it waited", time.monotonic() - started > 0.2)
        finally:
            timer.join()
    run(scenario)


# Closing.


def test_calls_after_close(run):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/closed"
        h.write("", p, "x")
        t = rec.token("t", Token())
        h.watch(p, t)
        th = h.transaction_start()
        rec.fileno("fileno", h)
        rec.call("close", h.close)
        calls = [
            ("read", ("", p)), ("read", ()), ("read", (1, 2, 3)), ("write", ("", p, "y")),
            ("ls", ("", p)), ("mkdir", ("", p)), ("rm", ("", p)),
            ("get_permissions", ("", p)), ("set_permissions", ("", p, [{"dom": 0}])),
            ("set_permissions", ("", p, 5)), ("watch", (p, t)), ("unwatch", (p, t)),
            ("read_watch", ()), ("check_watch", ()), ("fileno", ()),
            ("transaction_start", ()), ("transaction_end", (th,)),
            ("transaction_end", (1, 2, 3)), ("introduce_domain", (1, 2, 3)),
            ("set_target", (1, 2)), ("resume_domain", (1,)), ("release_domain", (1,)),
            ("get_domain_path", (0,)), ("get_domain_path", ("x",)), ("close", ()),
        ]
        for name, args in calls:
            rec.call("%s%r" % (name, args), getattr(h, name), *args)
        rec.call("keywords are refused first", h.read, path=p)
        rec.call("arguments to a no-argument method first", h.close, 1)
        rec.call("transaction_end keywords after the closed check",
                 h.transaction_end, transaction=th, bad=1)
        # The transaction was aborted and the node is unchanged.
        other = rec.open()
        rec.call("value as before", other.read, "", p)
    run(scenario)


# Domains (a fresh daemon for each side).


def test_domains(run_private):
    def scenario(rec: Recorder):
        h = rec.open()
        t = rec.token("t", Token())
        for domid in (0, 1, 7, 65535, 65536, 2 ** 31 - 1, -1, -2 ** 31, True):
            rec.call("get_domain_path(%r)" % domid, h.get_domain_path, domid)
        rec.call("watch @introduceDomain", h.watch, "@introduceDomain", t)
        rec.next_event("registration", h)
        for args in ((5, 1, 1), (5, -1, -1), (-5, 2 ** 63 - 1, 7), (0, 1, 1), (0, 1, 1)):
            rec.call("introduce_domain%r" % (args,), h.introduce_domain, *args)
        rec.readable("did any introduction fire?", h, 0.3)
        for dom in (5, 0, -1):
            rec.call("resume_domain(%r)" % dom, h.resume_domain, dom)
        for args in ((5, 6), (0, 5), (0, 0), (-1, -1)):
            rec.call("set_target%r" % (args,), h.set_target, *args)
        rec.call("watch @releaseDomain", h.watch, "@releaseDomain", t)
        rec.next_event("registration", h)
        for dom in (5, -1, 0):
            rec.call("release_domain(%r)" % dom, h.release_domain, dom)
        rec.readable("did a release fire?", h, 0.3)
        rec.call("the store still answers", h.read, "", "/tool")
    run_private(scenario)


# A dying daemon (a fresh daemon for each side).


def test_daemon_dies_without_watches(run_private):
    def scenario(rec: Recorder):
        h = rec.open()
        rec.call("read", h.read, "", "/tool")
        rec.daemon.kill()
        rec.call("first call after the death", h.read, "", "/tool")
        rec.failed_for_good(h, "/tool")
    run_private(scenario)


def test_daemon_dies_with_events_queued(run_private):
    def scenario(rec: Recorder):
        h = rec.open()
        p = rec.root + "/dying"
        t = rec.token("t", Token())
        h.watch(p, t)
        rec.fileno("fileno", h)
        rec.next_event("registration", h)
        h.write("", p + "/a", "1")
        h.write("", p + "/b", "1")
        rec.readable("events waiting", h, 5)
        in_sync(h)
        rec.daemon.kill()
        # Events queued before the end are still handed out, then EINVAL.
        rec.drain("after the death", h)
        rec.call("read_watch", h.read_watch)
        rec.call("read", h.read, "", p)
        rec.call("unwatch", h.unwatch, p, t)
        rec.fileno("fileno still works", h)
        rec.call("close", h.close)
    run_private(scenario)
