"""The descriptor behind :meth:`pyxs.compat.xs.fileno`.

The C extension's ``fileno()`` is a pipe that libxenstore writes to when
a watch event is queued (``xs_fileno`` in ``tools/libs/store/xs.c``); a
reader thread of libxenstore's own queues the events as they arrive.
pyxs reads a connection with watches in a thread of its own too (the
channel's drainer), but only while no call is reading it.  The
descriptor handed out here is an epoll (Linux) or kqueue (BSD) instance
watching two things at once:

* the connection itself, readable as soon as XenStore sends anything;
* a pipe that holds one byte while events wait in the queue: the
  channel sets it as it queues an event, and every method of ``xs``
  brings it up to date before returning.

Either makes the instance readable, so "readable" means exactly "an
event is queued or on its way".  The one difference: readiness may also
come from a reply that another thread of the same handle is about to
read; a ``check_watch()`` then simply returns None.
"""

import errno
import os
import select
import threading
from typing import Any, Callable, Optional

from ..connection import wakeup_pipe

__all__ = ["Readiness"]


class Readiness:
    """A pollable descriptor for "watch events are waiting".

    :param connection_fd: the connection's descriptor, None when it has
        already failed.
    :raises OSError: when no descriptor can be made.
    """

    def __init__(self, connection_fd: Optional[int]) -> None:
        self._lock = threading.Lock()
        self._flagged = False
        self._flag_r, self._flag_w = wakeup_pipe()
        try:
            fds = [self._flag_r] + ([connection_fd] if connection_fd is not None else [])
            self._connection_fd = connection_fd
            if hasattr(select, "epoll"):
                self._poller: Any = select.epoll()
                for fd in fds:
                    self._poller.register(fd, select.EPOLLIN)
            elif hasattr(select, "kqueue"):
                self._poller = select.kqueue()
                # (Linux's typeshed has no kqueue: these lines run on BSD.)
                self._poller.control([select.kevent(fd, select.KQ_FILTER_READ,  # type: ignore[attr-defined]
                                                    select.KQ_EV_ADD)  # type: ignore[attr-defined]
                                      for fd in fds], 0)
            else:
                raise OSError(errno.ENOSYS, "neither epoll nor kqueue is available")
        except BaseException:
            os.close(self._flag_r)
            os.close(self._flag_w)
            raise

    def fileno(self) -> int:
        fd: int = self._poller.fileno()
        return fd

    def update(self, pending: Callable[[], bool]) -> None:
        """Make the flag pipe readable exactly while ``pending()`` is
        true (asked with the lock held, so that the last update wins)."""
        with self._lock:
            if pending():
                if not self._flagged:
                    os.write(self._flag_w, b"!")
                    self._flagged = True
            elif self._flagged:
                os.read(self._flag_r, 1)
                self._flagged = False

    def forget_connection(self) -> None:
        """Stop watching the connection (it is closed or failed)."""
        fd, self._connection_fd = self._connection_fd, None
        if fd is None:
            return
        try:
            if hasattr(select, "epoll") and isinstance(self._poller, select.epoll):
                self._poller.unregister(fd)
            else:
                self._poller.control([select.kevent(fd, select.KQ_FILTER_READ,  # type: ignore[attr-defined]
                                                    select.KQ_EV_DELETE)], 0)  # type: ignore[attr-defined]
        except (OSError, ValueError):
            pass  # Closing the descriptor has already removed it.

    def close(self) -> None:
        self._poller.close()
        os.close(self._flag_r)
        os.close(self._flag_w)
