"""Transports: bytes to and from XenStore over a file descriptor.

A connection knows how to open its file descriptor and move bytes; it
knows nothing of messages.  Both kinds put the descriptor in
non-blocking mode and wait for it with :func:`select.poll`, so every
wait can be bounded, and every operating-system failure becomes a
:exc:`~pyxs.exceptions.ConnectionError` that names the path.
"""

from __future__ import annotations

import errno
import os
import select
import time
from typing import Optional, Tuple

from ._internal import HEADER, PAYLOAD_MAX, READ_SIZE, WIRE_ERRORS
from .exceptions import ConnectionError, Timeout

__all__ = ["UnixSocketConnection", "XenBusConnection", "FileDescriptorConnection",
           "DEFAULT_TIMEOUT", "default_socket_path", "default_xenbus_path"]

#: Seconds a call may wait for XenStore when no timeout is given.
DEFAULT_TIMEOUT = 30.0


class MessageRefused(Exception):
    """A XenBus device refused one whole message and dropped it, instead
    of passing it on: the stream is intact.  For the channel only.

    :ivar index: which message of those given to ``send()``.
    :ivar errno: the error the device gave.
    :ivar rest: the messages after it, not sent.
    """

    def __init__(self, index: int, errno: int, rest: bytes) -> None:
        super().__init__(index, errno)
        self.index, self.errno, self.rest = index, errno, rest


def default_socket_path() -> str:
    """Where xenstored listens, by the same rules as Xen's libxenstore:
    ``$XENSTORED_PATH``, else ``$XENSTORED_RUNDIR/socket``, else
    ``/var/run/xenstored/socket``.

    .. versionadded:: 0.5.0
    """
    return os.environ.get("XENSTORED_PATH") or os.path.join(
        os.environ.get("XENSTORED_RUNDIR", "/var/run/xenstored"), "socket")


def default_xenbus_path() -> str:
    """Where this operating system exposes the XenBus device, by the same
    rules as Xen's libxenstore (``$XENSTORED_PATH`` first).

    .. versionadded:: 0.5.0
    """
    if os.environ.get("XENSTORED_PATH"):
        return os.environ["XENSTORED_PATH"]
    system = os.uname().sysname
    if system == "NetBSD":
        return "/kern/xen/xenbus"
    if system == "FreeBSD":
        return "/dev/xen/xenstore"
    if system == "Linux" and not os.path.exists("/dev/xen/xenbus"):
        return "/proc/xen/xenbus"
    return "/dev/xen/xenbus"


def wakeup_pipe() -> Tuple[int, int]:
    """A self-pipe, ``(read end, write end)``, both ends non-blocking (and,
    as :func:`os.pipe` makes them, not inherited by child processes): a
    byte written to it wakes a thread that polls the read end along with
    a connection."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end


class FileDescriptorConnection:
    """What both transports share: a non-blocking descriptor, bounded
    writes, and errors that name the path.  Subclasses provide
    ``_open()``, which returns a connected descriptor.  Waiting for
    replies is the client's business: it polls :meth:`fileno`.

    :param path: what the descriptor is opened from.
    :param timeout: seconds that connecting, and each call through this
        connection, may take (default :data:`DEFAULT_TIMEOUT`).
    :param socket_timeout: the same, by the name pyxs 0.4's
        :class:`UnixSocketConnection` gave it; give one or the other.
    :raises TypeError: when both *timeout* and *socket_timeout* are given.
    :ivar path: what the descriptor is opened from.
    :ivar timeout: seconds a call through this connection may take.
    :ivar payload_max: the largest request payload it carries.

    .. versionchanged:: 0.5.0
       Both transports take *timeout*, and *socket_timeout* as well.
    """

    payload_max = PAYLOAD_MAX

    def __init__(self, path: str, timeout: Optional[float] = None, *,
                 socket_timeout: Optional[float] = None) -> None:
        if socket_timeout is not None:
            if timeout is not None:
                raise TypeError("give timeout or socket_timeout (its older name), not both")
            timeout = socket_timeout
        self.path = path
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.fd: Optional[int] = None

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, self.path)

    @property
    def socket_timeout(self) -> float:
        """``timeout`` by its older name."""
        return self.timeout

    @property
    def is_connected(self) -> bool:
        return self.fd is not None

    def _open(self) -> int:
        raise NotImplementedError

    def connect(self) -> None:
        """Open the descriptor; nothing happens if it is already open."""
        if self.fd is not None:
            return
        fd = self._open()
        try:
            os.set_blocking(fd, False)
        except OSError as e:
            os.close(fd)
            raise self._failure("cannot set up", e) from e
        self.fd = fd

    def disconnect(self) -> None:
        """Close the descriptor; nothing happens if it is not open."""
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass  # The descriptor is released even when close() complains.

    close = disconnect

    def fileno(self) -> int:
        """The open descriptor, for :mod:`select` and friends."""
        if self.fd is None:
            raise ConnectionError("not connected to %r" % self.path)
        return self.fd

    def send(self, data: bytes, timeout: Optional[float]) -> None:
        """Write all of *data*, waiting at most *timeout* seconds (forever
        when ``None``) whenever the descriptor cannot take more.  A
        failure part-way leaves the stream broken: the caller must then
        disconnect.

        :raises pyxs.exceptions.Timeout: when the other end stopped taking
            data for *timeout* seconds.
        :raises pyxs.exceptions.ConnectionError: when the write fails.
        """
        fd = self.fileno()
        while data:
            try:
                written = os.write(fd, data)
                if written == len(data):
                    return
                data = data[written:]
            except BlockingIOError:
                # Polled only now: a XenBus device never reports POLLOUT.
                poll = select.poll()
                poll.register(fd, select.POLLOUT)
                if timeout is None:
                    poll.poll(None)
                elif not poll.poll(max(timeout, 0.0) * 1000):
                    raise Timeout("timed out after %gs waiting to write to %r"
                                  % (timeout, self.path)) from None
            except OSError as e:
                raise self._failure("cannot write to", e) from e

    def read(self) -> bytes:
        """Return the bytes that have arrived, or ``b""`` when none have
        yet; never blocks.

        :raises pyxs.exceptions.ConnectionError: when the other end has
            closed the connection or the read fails.
        """
        fd = self.fileno()
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as e:
            raise self._failure("cannot read from", e) from e
        if not data:
            raise ConnectionError("%r closed the connection" % self.path)
        return data

    def _failure(self, action: str, error: OSError) -> ConnectionError:
        reason = os.strerror(error.errno) if error.errno else str(error)
        return ConnectionError("%s %r: %s" % (action, self.path, reason))


class UnixSocketConnection(FileDescriptorConnection):
    """A connection to xenstored's Unix domain socket, which the daemon
    treats as privileged (domain 0).

    :param path: the socket; by default found as Xen's libxenstore finds
        it (see :func:`default_socket_path`).
    :param timeout: seconds that connecting, and each call through this
        connection, may take (default :data:`DEFAULT_TIMEOUT`).
    :param socket_timeout: the older name of *timeout*.
    """

    def __init__(self, path: Optional[str] = None, timeout: Optional[float] = None, *,
                 socket_timeout: Optional[float] = None) -> None:
        super().__init__(os.fspath(path) if path is not None else default_socket_path(),
                         timeout, socket_timeout=socket_timeout)

    def __copy__(self) -> "UnixSocketConnection":
        return type(self)(self.path, self.timeout)

    def _open(self) -> int:
        # Imported here, where it is needed: it is a large part of what
        # "import pyxs" would cost, and a guest never needs it.
        import socket

        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.0))
                sock.connect(self.path)
                return sock.detach()
            except BlockingIOError:
                # The daemon's accept queue is full: a Unix socket says so
                # at once instead of waiting, so wait here, within the bound.
                sock.close()
                if time.monotonic() + pause > deadline:
                    raise Timeout("timed out connecting to %r: its queue stayed full"
                                  % self.path) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            except socket.timeout as e:
                sock.close()
                raise Timeout("timed out connecting to %r" % self.path) from e
            except OSError as e:
                sock.close()
                raise self._failure("cannot connect to", e) from e


class XenBusConnection(FileDescriptorConnection):
    """A connection through the XenBus character device, the way guests
    (and dom0 without a socket) reach XenStore.

    :param path: the device; by default the one this operating system
        provides (see :func:`default_xenbus_path`).
    :param timeout: seconds each call through this connection may take
        (default :data:`DEFAULT_TIMEOUT`).
    :param socket_timeout: the older name of *timeout*, as
        :class:`UnixSocketConnection` takes it.
    """

    def __init__(self, path: Optional[str] = None, timeout: Optional[float] = None, *,
                 socket_timeout: Optional[float] = None) -> None:
        super().__init__(os.fspath(path) if path is not None else default_xenbus_path(),
                         timeout, socket_timeout=socket_timeout)

    #: Linux's device takes a message of at most 4096 bytes, its header
    #: included (``xenbus_dev_frontend.c``).
    payload_max = 4096 - HEADER.size

    def __copy__(self) -> "XenBusConnection":
        return type(self)(self.path, self.timeout)

    def send(self, data: bytes, timeout: Optional[float]) -> None:
        """Write *data*, one message per ``write()``: Linux's device acts
        on the first message a write completes and drops the rest of it.
        The messages must be whole (as :class:`~pyxs.client.Client`
        sends them).

        When the device fails the write of a message with a XenStore
        error, as Linux does when the daemon refuses a ``WATCH`` (it
        registers watches itself), the messages before it have been sent
        and ``MessageRefused`` says which one it was, for the channel to
        answer it with that error.

        :raises pyxs.exceptions.Timeout: as for the socket.
        :raises pyxs.exceptions.ConnectionError: when a write fails
            otherwise.
        """
        # Cut by the header's length field, not by FrameDecoder: the bytes
        # go out as they came, where decoded frames would be copied and
        # encoded again.
        view = memoryview(data)
        index = 0
        while view:
            end = HEADER.size + HEADER.unpack_from(view)[3] if len(view) >= HEADER.size \
                else len(view)
            try:
                super().send(bytes(view[:end]), timeout)
            except ConnectionError as e:
                cause = e.__cause__
                if isinstance(cause, OSError) and cause.errno in _REFUSALS:
                    raise MessageRefused(index, cause.errno, bytes(view[end:])) from cause
                raise
            view = view[end:]
            index += 1

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as e:
            raise self._failure("cannot open", e) from e


# The errors a XenBus device fails a whole message's write() with when it
# drops that message only: XenStore's own error names, as Linux maps them.
_REFUSALS = frozenset(WIRE_ERRORS.values()) - {errno.EAGAIN, errno.EIO}
