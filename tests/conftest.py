"""Shared pytest fixtures for pyxs's tests.

Real-daemon fixtures (see tests/support/daemons.py): they run Xen 4.17's own
C xenstored and OCaml oxenstored. When this machine cannot provide them the
tests using these fixtures are skipped, or fail if PYXS_REQUIRE_REAL_DAEMONS=1.

Every test that needs anything from Xen 4.17 (a daemon, the C clients, the
C module ``xen.lowlevel.xs``) carries the ``realdaemon`` marker, so that
``pytest -m "not realdaemon"`` runs exactly the tests that need nothing but
Python (the mutation tool does).  Tests using the fixtures below are marked
here; a test that calls tests/support/ for Xen itself is marked in its file,
and an unmarked test that reaches Xen's programs fails (see
:func:`_xen_refused_to`).
"""

import contextlib
import uuid

import pytest

from pyxs._internal import Op
from pyxs.testing import XenStoreServer

from .support import daemons, xen, xen_clients
from .support.fakeserver import ScriptedServer
from .support.wire import raw_request

# Markers.

#: Fixtures that always bring up something of Xen's.
_XEN_FIXTURES = {"real_daemon", "start_daemon", "xs_lowlevel", "node_root"}

#: What tests/support/ gets Xen's programs through: (module, function).
_XEN_ENTRY_POINTS = ((xen, "prefix"), (daemons, "start"), (xen_clients, "load_lowlevel_xs"))


def _needs_xen(item):
    if _XEN_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    # A parameter naming a real daemon ("xenstore", "kind", ...) brings it up.
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        isinstance(value, str) and value in daemons.KINDS for value in callspec.params.values())


def pytest_collection_modifyitems(items):
    for item in items:
        if _needs_xen(item):
            item.add_marker("realdaemon")


@contextlib.contextmanager
def _xen_refused_to(item):
    """While an unmarked test sets up (its module and session fixtures
    included) and runs, reaching for Xen's programs fails it, so that
    ``-m "not realdaemon"`` can be trusted to need nothing but Python."""
    if item.get_closest_marker("realdaemon") is not None:
        yield
        return

    def refuse(*args, **kwargs):
        raise AssertionError("%s uses Xen's programs but is not marked realdaemon"
                             % item.nodeid)
    saved = [(module, name, getattr(module, name)) for module, name in _XEN_ENTRY_POINTS]
    for module, name, _function in saved:
        setattr(module, name, refuse)
    try:
        yield
    finally:
        for module, name, function in saved:
            setattr(module, name, function)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _xen_refused_to(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _xen_refused_to(item):
        yield


# Real daemons.

@pytest.fixture(scope="session")
def session_backends(tmp_path_factory):
    """``get(kind)``: the session's one running backend of that kind,
    started on first use and stopped at the end of the session."""
    started = {}

    def get(kind):
        if kind not in started:
            if kind == "emulator":
                started[kind] = XenStoreServer().start()
            else:
                started[kind] = xen.require(
                    daemons.start, kind, tmp_path_factory.mktemp(kind))
        return started[kind]

    yield get
    for daemon in started.values():
        daemon.stop()


@pytest.fixture(scope="session", params=daemons.KINDS, ids=list(daemons.KINDS))
def real_daemon(request, session_backends):
    """A running daemon of each kind, shared by the whole session. Do not
    kill or pause it: use start_daemon for that."""
    return session_backends(request.param)


@pytest.fixture
def start_daemon(tmp_path):
    """Factory: ``start_daemon(kind, **start_kwargs)`` starts a private
    daemon for one test (to kill, pause, ...); all are stopped afterwards."""
    started = []

    def _start(kind, **kwargs):
        daemon = xen.require(daemons.start, kind, tmp_path, **kwargs)
        started.append(daemon)
        return daemon

    yield _start
    # oxenstored sometimes sleeps through SIGTERM (after a guest's
    # conversation was ended): 2 s is plenty for a daemon that will exit.
    for daemon in started:
        daemon.stop(timeout=2)


@pytest.fixture(scope="session")
def xs_lowlevel():
    """Xen's C extension module xen.lowlevel.xs (CPython 3.11 only).
    Set os.environ["XENSTORED_PATH"] (e.g. with monkeypatch) before xs(),
    or use tests.support.xen_clients.open_handle."""
    return xen.require(xen_clients.load_lowlevel_xs)


@contextlib.contextmanager
def _scratch_path(target):
    """A unique absolute path (``/pyxs-test/<hex>``) in *target*'s tree,
    removed afterwards with a raw RM request (independent of pyxs)."""
    path = "/pyxs-test/" + uuid.uuid4().hex
    yield path
    try:
        raw_request(target, Op.RM, path.encode() + b"\0", timeout=5)
    except OSError:
        pass  # The backend is gone or stuck: nothing left to clean.


@pytest.fixture
def node_root(real_daemon):
    """A path in real_daemon's tree that the test may use freely (see
    :func:`_scratch_path`)."""
    with _scratch_path(real_daemon) as path:
        yield path


# Any XenStore backend.

#: Every backend the client tests run against: the real daemons and
#: pyxs's own emulator (which needs nothing from the machine).
BACKENDS = tuple(daemons.KINDS) + ("emulator",)


@pytest.fixture(scope="session", params=BACKENDS, ids=list(BACKENDS))
def xenstore(request, session_backends):
    """A running XenStore of each backend, shared by the session: an
    object with ``kind`` and ``socket_path``.  Do not kill it."""
    return session_backends(request.param)


@pytest.fixture
def client(xenstore):
    """A connected pyxs Client on ``xenstore``, closed afterwards."""
    from pyxs import Client

    with Client(unix_socket_path=xenstore.socket_path, socket_timeout=10) as c:
        yield c


@pytest.fixture
def root(xenstore):
    """A path in ``xenstore``'s tree for the test to use freely (see
    :func:`_scratch_path`)."""
    with _scratch_path(xenstore) as path:
        yield path


# A scripted XenStore.

@pytest.fixture
def server(tmp_path):
    """Factory: ``server(*scripts)`` starts a scripted XenStore (see
    tests/support/fakeserver.py, ``ScriptedServer``); each is closed
    afterwards, and a script that failed fails the test."""
    made = []

    def make(*scripts):
        made.append(ScriptedServer(tmp_path / ("xs%d.sock" % len(made)), scripts))
        return made[-1]

    yield make
    for s in made:
        s.close()
    for s in made:
        assert not s.errors, "a scripted server failed: %r" % (s.errors,)
