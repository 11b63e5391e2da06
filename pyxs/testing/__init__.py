"""An in-process XenStore daemon for tests.

:class:`XenStoreServer` runs a XenStore that lives entirely inside the
Python process: pure Python, standard library only, no Xen needed.  It
answers on a Unix socket like the real daemon's, and can also offer a
guest's XenBus device (one conversation per open, as Linux's) or a
pseudo-terminal (one conversation in all).  Its answers
follow Xen 4.17's C ``xenstored`` closely, down to error codes, watch
event order, transaction conflicts and the generation counts of
``DIRECTORY_PART``, so that code tested against it behaves the same
against the real thing.

>>> from pyxs.testing import XenStoreServer
>>> with XenStoreServer() as server:
...     server.kind, os.path.exists(server.socket_path)
('emulator', True)

For pytest, :mod:`pyxs.pytest_plugin` provides the fixtures
``xenstore_server`` and ``xenstore_client``; ``python -m pyxs.testing``
serves from the command line.

Inside, the daemon's state and answers are a sans-I/O :class:`Store`
(``_store.py``, with the dispatch of requests), split the way C
xenstored's sources are: ``_core.py`` (the node tree and the requests on
nodes), ``_transaction.py``, ``_watch.py``, ``_domain.py`` and
``_control.py``, over the records of ``_model.py``; each call returns an
outcome (``_outcome.py``).  ``_server.py`` serves the store on a selector
loop, and ``_xenbus.py`` plays a guest's XenBus device.

.. versionadded:: 0.5.0
"""

import logging
import os
import shutil
import tempfile
import threading
from typing import Optional, Type

from ._server import Loop
from ._store import Store

__all__ = ["XenStoreServer", "Store"]

log = logging.getLogger("pyxs.testing")


class XenStoreServer:
    """An emulated XenStore daemon, served from a background thread.

    The server holds what a freshly started C ``xenstored`` holds (the
    nodes ``/``, ``/tool`` and ``/tool/xenstored``) and is ready to accept
    connections as soon as :meth:`start` returns.  Use it as a context
    manager to have it stopped on the way out::

        with XenStoreServer() as server:
            client = pyxs.Client(unix_socket_path=server.socket_path)

    Every connection to the Unix socket acts as domain 0, with full
    privileges, as on the real daemon's socket.  With ``pty=True`` the
    server also opens a pseudo-terminal in raw mode: a client opens
    ``pty_path`` with ``O_RDWR``, as it would ``/dev/xen/xenbus``, and
    speaks for domain *pty_domid*.  For a domain other than 0 that
    connection is unprivileged: permissions apply, relative paths are
    relative to ``/local/domain/<pty_domid>``, and the quotas of C
    xenstored hold.  The pseudo-terminal is one conversation for the
    server's whole life, whoever opens it.

    :param socket_path: where to create the Unix socket; by default
        :meth:`start` makes a fresh temporary directory for it, which
        :meth:`stop` removes.  A stale socket already at that path is
        replaced.
    :param pty: also serve a pseudo-terminal standing in for a XenBus
        device.
    :param pty_domid: the domain the pseudo-terminal's connection speaks
        for (default 0).
    :param xenbus_path: also serve a guest's XenBus device: a symbolic
        link is made at this path (which must not exist) to a file that
        :class:`~pyxs.connection.XenBusConnection` opens like
        ``/dev/xen/xenbus``, every open being a conversation of its own
        as domain *xenbus_domid*, with the rules of Linux's device.  The
        file lives in a FUSE file system, so this needs Linux and root
        (or ``fusermount3``).
    :param xenbus_domid: the domain the XenBus device's ring belongs to
        (default 1); it counts as introduced while the server runs.

    :ivar kind: ``"emulator"``, telling this backend apart from the real
        daemons in test parametrisations.
    :ivar socket_path: the Unix socket's path (None before the first
        :meth:`start` when no path was given).
    :ivar pty_path: the pseudo-terminal's path once started with
        ``pty=True``, else None.
    :ivar xenbus_path: the XenBus device's path, or None.
    :ivar xenbus_domid: the domain speaking through the XenBus device.
    """

    kind = "emulator"

    def __init__(self, socket_path: Optional[str] = None, *, pty: bool = False,
                 pty_domid: int = 0, xenbus_path: Optional[str] = None,
                 xenbus_domid: int = 1) -> None:
        for name, domid in (("pty_domid", pty_domid), ("xenbus_domid", xenbus_domid)):
            if isinstance(domid, bool) or not isinstance(domid, int) \
                    or not 0 <= domid < 0x7FF0:
                raise ValueError("%s must be a domain id from 0 to 32751, not %r"
                                 % (name, domid))
        if pty and xenbus_path is not None and pty_domid == xenbus_domid:
            raise ValueError("the pty and the XenBus device cannot both be domain %d's "
                             "ring" % pty_domid)
        self.xenbus_path: Optional[str] = None if xenbus_path is None else os.fspath(xenbus_path)
        self.xenbus_domid = xenbus_domid
        self._tempdir: Optional[str] = None
        self._own_socket = socket_path is None
        self.socket_path: Optional[str] = None if socket_path is None else os.fspath(socket_path)
        self.pty_path: Optional[str] = None
        self._pty = pty
        self._pty_domid = pty_domid
        self._store: Optional[Store] = None
        self._loop: Optional[Loop] = None
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def store(self) -> Store:
        """The emulated daemon's state (:class:`pyxs.testing._store.Store`),
        for inspection in tests.  It belongs to the server thread: look,
        but do not change it while the server runs."""
        if self._store is None:
            raise RuntimeError("the server has not been started")
        return self._store

    def start(self) -> "XenStoreServer":
        """Start serving with a fresh store.  When this returns, the
        socket accepts connections.

        :returns: the server itself.
        :raises RuntimeError: if it is already running.
        :raises OSError: if the socket cannot be created.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the server is already running")
            if self._own_socket:
                self._tempdir = tempfile.mkdtemp(prefix="pyxs-xenstore-")
                self.socket_path = os.path.join(self._tempdir, "socket")
            self._store = Store()
            assert self.socket_path is not None  # Given, or just made.
            loop = Loop(self._store, self.socket_path, self._pty, self._pty_domid,
                        self.xenbus_path, self.xenbus_domid)
            try:
                loop.open()
            except BaseException:
                self._remove_tempdir()
                raise
            self._loop = loop
            self.pty_path = loop.pty_path
            self._failure = None
            self._thread = threading.Thread(target=self._serve, name="pyxs-xenstore",
                                            daemon=True)
            self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._loop is not None  # Set before the thread starts.
        try:
            self._loop.run()
        except BaseException as exc:  # pragma: no cover - a bug in the loop
            self._failure = exc
            log.exception("the XenStore emulator stopped on an error")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every connection and descriptor.
        Calling it again, or on a server never started, does nothing.

        :param timeout: seconds to wait for the server thread.
        :raises RuntimeError: if the server thread does not stop in time,
            or stopped earlier on an error.
        """
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None:
                self._remove_tempdir()
                return
            assert loop is not None  # Set with the thread.
            loop.stopping = True
            loop.wake()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("the XenStore emulator did not stop within %s s"
                                   % timeout)
            loop.close()
            self._thread = self._loop = None
            self.pty_path = None
            self._remove_tempdir()
            failure, self._failure = self._failure, None
        if failure is not None:
            raise RuntimeError("the XenStore emulator had failed") from failure

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> "XenStoreServer":
        return self.start()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: object,
                 tb: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        extra = " pty=%s" % self.pty_path if self.pty_path else ""
        return "<XenStoreServer %s %s%s>" % (state, self.socket_path, extra)
