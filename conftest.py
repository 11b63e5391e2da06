"""Fixtures for the doctests in pyxs/, docs/ and README.rst.

The examples in docstrings and in the documentation talk to a real
XenStore: Xen's own C ``xenstored``, started once per test session by
tests/support/daemons.py (the same machinery the test suite uses).  Each
doctest sees

* ``socket_path``: the daemon's Unix socket, in its namespace, for
  examples written as ``Client(unix_socket_path=socket_path)``;
* ``XENSTORED_PATH`` set to that socket in the environment, so that
  examples written as plain ``Client()`` work as a reader would type them;
* a fresh tree: everything but ``/tool`` is removed before each doctest
  file or docstring, so examples never see each other's nodes.

The daemon is only started when a doctest runs, so ordinary tests do not
pay for it.  When the daemon cannot be had, the doctests are skipped (or
fail, with ``PYXS_REQUIRE_REAL_DAEMONS=1``), like the other real-daemon
tests.

This file lives at the repository root because pytest only applies a
conftest.py to the directory it is in and those below: tests/conftest.py
does not reach pyxs/, docs/ or README.rst.
"""

import pytest
from _pytest.doctest import DoctestItem

from pyxs._internal import Op
from tests.support import daemons, xen
from tests.support.wire import raw_request

# Files that must never be imported as test modules, even with
# --doctest-modules over the whole tree.
collect_ignore = ["setup.py", "docs/conf.py"]
# docs/pytest-example holds tests for pyxs's pytest plugin that the docs
# show; tests/test_pytest_plugin.py runs them, with the plugin loaded.
collect_ignore_glob = ["docs/_build/*", "build/*", ".venv/*", ".venv-*/*", "examples/*",
                       "docs/pytest-example/*"]

# Nodes of a fresh C xenstored, kept between doctests.
_KEEP = {b"tool"}


@pytest.fixture(scope="session")
def doctest_xenstored(tmp_path_factory):
    """The C xenstored the doctests talk to (one for the session)."""
    daemon = xen.require(daemons.start, "xenstored", tmp_path_factory.mktemp("doctest-xenstored"))
    yield daemon
    daemon.stop()


def _reset_tree(daemon):
    """Remove every top-level node but the daemon's own, with raw
    requests (independent of pyxs)."""
    kind, payload = raw_request(daemon, Op.DIRECTORY, b"/\0", timeout=5)
    if kind == Op.ERROR:
        raise RuntimeError("cannot list / of the doctest xenstored: %r" % payload)
    for name in payload.split(b"\0"):
        if name and name not in _KEEP:
            raw_request(daemon, Op.RM, b"/" + name + b"\0", timeout=5)


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, DoctestItem):
            item.add_marker("realdaemon")  # They all talk to doctest_xenstored.


@pytest.fixture(autouse=True)
def _doctest_xenstore(request):
    """For doctest items only: a clean daemon, ``socket_path`` in the
    doctest namespace and ``XENSTORED_PATH`` in the environment."""
    if not isinstance(request.node, DoctestItem):
        yield
        return
    daemon = request.getfixturevalue("doctest_xenstored")
    _reset_tree(daemon)
    request.getfixturevalue("doctest_namespace")["socket_path"] = daemon.socket_path
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XENSTORED_PATH", daemon.socket_path)
        patch.delenv("XENSTORED_RUNDIR", raising=False)
        yield
