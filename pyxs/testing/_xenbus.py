"""A guest's XenBus device: one conversation per open, over one ring.

Linux gives a guest's programs XenStore through ``/dev/xen/xenbus``
(``drivers/xen/xenbus/xenbus_dev_frontend.c``).  The kernel owns the
guest's single ring connection to the daemon and multiplexes every open
of the device onto it, with rules of its own that a program can observe:

* each open is a conversation of its own: the kernel gives every request
  a request id of its own on the ring and puts the caller's id back into
  the reply;
* a write must carry whole messages: bytes are gathered until a message
  is complete, the message is acted on and whatever else the write held
  is dropped; a message of more than 4096 bytes *including* its header
  fails the write with ``E2BIG``, a write that would overflow the 4096
  byte buffer fails with ``EINVAL``;
* ``WATCH`` is registered by the kernel under a token of its own, so the
  same path and token twice on one open are two watches; events reach
  only the open that asked, with its token; ``UNWATCH`` of a watch the
  open does not hold still answers ``OK``; a path or token missing its
  NUL is ``EINVAL``; a refused registration fails the *write* with the
  daemon's error instead of sending an error reply;
* transactions belong to an open: a request naming a transaction the
  open did not start is answered ``ENOENT`` by the kernel, a
  ``TRANSACTION_END`` whose body is not exactly ``T`` or ``F`` gets
  ``EINVAL``; closing the open aborts its transactions and removes its
  watches.

:class:`Frontend` is those rules, over any byte channel to a daemon for
one domain.  :class:`FuseDevice` serves a :class:`Frontend` as a file in
a FUSE file system (Linux, root or ``fusermount3``), so that every
``open()`` of the file is a new conversation, exactly like the device.
"""

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import shutil
import socket
import struct
import subprocess
from typing import Callable, Dict, List, Optional, Set, Tuple

from .._cnumbers import u32
from .._internal import HEADER, Op, encode_frame, join_strings

__all__ = ["Frontend", "Handle", "FuseDevice", "unmount"]

log = logging.getLogger("pyxs.testing")

#: The device's request buffer: header and payload together.
DEVICE_BUFFER = 4096


def _strerror_name(payload: bytes) -> int:
    # Linux's xenbus maps the daemon's error names to errno numbers and
    # reads any name it does not know as EINVAL.
    name = payload.rstrip(b"\0").decode("ascii", "replace")
    value = getattr(errno, name, None) if name.startswith("E") else None
    return value if isinstance(value, int) else errno.EINVAL


class Handle:
    """One open of the device: its partial request, its queued replies
    and events, its transactions and watches."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.partial = bytearray()
        self.replies = bytearray()
        self.transactions: Set[int] = set()
        self.starting = 0  # TRANSACTION_STARTs awaiting their reply
        #: (path, token, kernel token) of every watch, in the order made.
        self.watches: List[Tuple[bytes, bytes, bytes]] = []
        self.closed = False


# What a request sent on the ring is for.
_FOR_CALLER, _FOR_WATCH, _FOR_KERNEL = range(3)


class Frontend:
    """Linux's ``xenbus_dev_frontend`` rules over one domain's ring.

    :param send: called with the bytes of each message the kernel would
        put on the ring, in order.
    :param readable: called with a :class:`Handle` whenever bytes were
        added to its :attr:`Handle.replies`.
    """

    def __init__(self, send: Callable[[bytes], None],
                 readable: Callable[[Handle], None]) -> None:
        self._send = send
        self._readable = readable
        self._next_handle = 1
        self._next_rq = 1
        self._next_token = 1
        # ring request id -> (purpose, handle, caller's header, completion)
        self._pending: Dict[int, Tuple[int, Handle, Tuple[int, int, int, int],
                                       Optional[Callable[[int], None]]]] = {}
        self._watches: Dict[bytes, Tuple[Handle, bytes]] = {}
        self._inbuf = bytearray()
        self._abandoned = False

    # The device's file operations.

    def open(self) -> Handle:
        """A new conversation."""
        handle = Handle(self._next_handle)
        self._next_handle += 1
        return handle

    def write(self, handle: Handle, data: bytes, done: Callable[[int], None]) -> None:
        """Take one ``write()`` of *data*; *done* gets its result: the
        number of bytes taken, or a negative errno (now or once the daemon
        has answered a ``WATCH``)."""
        # Cut here, not by FrameDecoder: the device counts the header in
        # its limit, and takes one message a write.
        if not data:
            done(0)
            return
        if len(data) > DEVICE_BUFFER - len(handle.partial):
            del handle.partial[:]
            done(-errno.EINVAL)
            return
        handle.partial += data
        if len(handle.partial) < HEADER.size:
            done(len(data))
            return
        op, rq_id, tx_id, size = HEADER.unpack_from(handle.partial)
        if HEADER.size + size > DEVICE_BUFFER:
            del handle.partial[:]
            done(-errno.E2BIG)
            return
        if len(handle.partial) < HEADER.size + size:
            done(len(data))
            return
        body = bytes(handle.partial[HEADER.size:HEADER.size + size])
        del handle.partial[:]  # bytes after the message are dropped
        header = (op, rq_id, tx_id, size)
        if op in (Op.WATCH, Op.UNWATCH):
            self._watch_request(handle, header, body, len(data), done)
        else:
            self._request(handle, header, body)
            done(len(data))

    def release(self, handle: Handle) -> None:
        """The last close of an open: abort its transactions, remove its
        watches."""
        handle.closed = True
        for tx_id in sorted(handle.transactions):
            self._ring(_FOR_KERNEL, handle, (Op.TRANSACTION_END, 0, tx_id, 2), b"F\0")
        handle.transactions.clear()
        for path, _, ktoken in handle.watches:
            self._unregister(handle, path, ktoken)
        handle.watches = []
        del handle.replies[:]

    # Requests.

    def _reply(self, handle: Handle, header: Tuple[int, int, int, int], op: int,
               body: bytes) -> None:
        if handle.closed:
            return
        handle.replies += encode_frame(op, header[1], header[2], body)
        self._readable(handle)

    def abandon(self) -> None:
        """The daemon no longer serves the ring (it released the domain, or
        would have crashed).  Linux would wait for ever; here a ``WATCH``,
        whose ``write()`` waits for the daemon's answer, fails with ``EIO``
        instead of hanging the writer, now and from now on.  Other
        requests stay unanswered, as with Linux."""
        self._abandoned = True
        for rq_id, (purpose, _, _, done) in list(self._pending.items()):
            if purpose == _FOR_WATCH:
                del self._pending[rq_id]
                assert done is not None  # A watch's write always waits on one.
                done(errno.EIO)

    def _ring(self, purpose: int, handle: Handle, header: Tuple[int, int, int, int],
              body: bytes, done: Optional[Callable[[int], None]] = None) -> None:
        if self._abandoned and done is not None:
            done(errno.EIO)
            return
        rq_id = self._next_rq
        self._next_rq = u32(rq_id + 1)
        self._pending[rq_id] = (purpose, handle, header, done)
        self._send(encode_frame(header[0], rq_id, header[2], body))

    def _request(self, handle: Handle, header: Tuple[int, int, int, int],
                 body: bytes) -> None:
        op, _, tx_id, size = header
        if op == Op.TRANSACTION_START:
            handle.starting += 1
        elif tx_id != 0 and tx_id not in handle.transactions:
            self._reply(handle, header, Op.ERROR, b"ENOENT\0")
            return
        elif op == Op.TRANSACTION_END and not (size == 2 and body in (b"T\0", b"F\0")):
            self._reply(handle, header, Op.ERROR, b"EINVAL\0")
            return
        self._ring(_FOR_CALLER, handle, header, body)

    def _watch_request(self, handle: Handle, header: Tuple[int, int, int, int],
                       body: bytes, taken: int, done: Callable[[int], None]) -> None:
        path_end = body.find(b"\0")
        token_end = body.find(b"\0", path_end + 1) if path_end >= 0 else -1
        if token_end < 0:
            self._reply(handle, header, Op.ERROR, b"EINVAL\0")
            done(taken)
            return
        path, token = body[:path_end], body[path_end + 1:token_end]
        if header[0] == Op.UNWATCH:
            for i, (wpath, wtoken, ktoken) in enumerate(handle.watches):
                if (wpath, wtoken) == (path, token):
                    del handle.watches[i]
                    self._unregister(handle, path, ktoken)
                    break
            self._reply(handle, header, Op.UNWATCH, b"OK\0")
            done(taken)
            return
        ktoken = b"%X" % self._next_token
        self._next_token += 1
        self._watches[ktoken] = (handle, token)

        def registered(error: int) -> None:
            if error:
                self._watches.pop(ktoken, None)
                done(-error)
                return
            handle.watches.append((path, token, ktoken))
            self._reply(handle, header, Op.WATCH, b"OK\0")
            done(taken)

        self._ring(_FOR_WATCH, handle, (Op.WATCH, 0, 0, 0),
                   join_strings(path, ktoken), registered)

    def _unregister(self, handle: Handle, path: bytes, ktoken: bytes) -> None:
        self._watches.pop(ktoken, None)
        self._ring(_FOR_KERNEL, handle, (Op.UNWATCH, 0, 0, 0), join_strings(path, ktoken))

    # What the daemon sends.

    def ring_input(self, data: bytes) -> None:
        """Bytes the daemon put on the ring's response side."""
        # Cut here, not by FrameDecoder: a real daemon's message goes on
        # as it came, also one over the protocol's limit (oxenstored sends
        # such listings), for the client to judge.
        self._inbuf += data
        while len(self._inbuf) >= HEADER.size:
            op, rq_id, tx_id, size = HEADER.unpack_from(self._inbuf)
            if len(self._inbuf) < HEADER.size + size:
                return
            body = bytes(self._inbuf[HEADER.size:HEADER.size + size])
            del self._inbuf[:HEADER.size + size]
            if op == Op.WATCH_EVENT:
                self._event(body)
            else:
                self._answer(op, rq_id, body)

    def _event(self, body: bytes) -> None:
        parts = body.split(b"\0")
        if len(parts) < 2 or parts[1] not in self._watches:
            return  # a watch removed while its event was on its way
        handle, token = self._watches[parts[1]]
        payload = join_strings(parts[0], token)
        # Linux fills in only the type and length of an event's header.
        self._reply(handle, (Op.WATCH_EVENT, 0, 0, 0), Op.WATCH_EVENT, payload)

    def _answer(self, op: int, rq_id: int, body: bytes) -> None:
        entry = self._pending.pop(rq_id, None)
        if entry is None:
            log.warning("a reply to no request (id %d) on the ring", rq_id)
            return
        purpose, handle, header, done = entry
        if purpose == _FOR_WATCH:
            assert done is not None  # A watch's write always waits on one.
            done(_strerror_name(body) if op == Op.ERROR else 0)
            return
        if purpose == _FOR_KERNEL:
            return
        if header[0] == Op.TRANSACTION_START:
            handle.starting -= 1
            if op != Op.ERROR:
                tx_id = int(body.rstrip(b"\0") or b"0")
                if handle.closed:
                    self._ring(_FOR_KERNEL, handle, (Op.TRANSACTION_END, 0, tx_id, 2), b"F\0")
                else:
                    handle.transactions.add(tx_id)
        elif header[0] == Op.TRANSACTION_END:
            handle.transactions.discard(header[2])
        self._reply(handle, header, op, body)


# The FUSE file.

_IN_HEADER = struct.Struct("=IIQQIIIHH")    # len, opcode, unique, nodeid, uid, gid, pid, ...
_OUT_HEADER = struct.Struct("=IiQ")        # len, error, unique
_ATTR = struct.Struct("=QQQQQQIIIIIIIIII")  # ino ... flags (88 bytes)

_LOOKUP, _FORGET, _GETATTR = 1, 2, 3
_OPEN, _READ, _WRITE, _STATFS, _RELEASE = 14, 15, 16, 17, 18
_FLUSH, _INIT, _OPENDIR, _READDIR, _RELEASEDIR = 25, 26, 27, 28, 29
_INTERRUPT, _DESTROY, _POLL, _BATCH_FORGET = 36, 38, 40, 42

_FOPEN_DIRECT_IO, _FOPEN_NONSEEKABLE, _FOPEN_STREAM = 1, 4, 16
_POLL_SCHEDULE_NOTIFY = 1
_NOTIFY_POLL = 1
_ROOT, _FILE = 1, 2
_MAX_WRITE = 128 * 1024
_READ_BUFFER = _MAX_WRITE + 4096 + 4096
_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2


def unmount(mountpoint: str) -> None:
    """Detach the FUSE file system at *mountpoint*, also when the process
    that served it is gone."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.umount2(os.fsencode(mountpoint), _MNT_DETACH)
        return
    helper = shutil.which("fusermount3") or shutil.which("fusermount")
    if helper:
        subprocess.run([helper, "-u", "-z", mountpoint], capture_output=True, timeout=30)


class _Open:
    """The FUSE side of one open: its frontend handle, a blocked read and
    a poll waiting for data."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.blocked_read: Optional[Tuple[int, int]] = None  # (unique, size)
        self.poll_kh: Optional[int] = None


class FuseDevice:
    """Serve a :class:`Frontend` as the file *mountpoint*/*name* of a
    one-file FUSE file system.

    Call :meth:`mount`, then :meth:`handle` whenever :meth:`fileno` is
    readable (it takes one request from the kernel), and :meth:`unmount`
    at the end.  The serving thread must never touch the file itself.

    :param frontend_factory: called once with this device's ``readable``
        callback, returns the :class:`Frontend` to serve.
    """

    def __init__(self, mountpoint: str, name: str,
                 frontend_factory: Callable[[Callable[[Handle], None]], Frontend]) -> None:
        self.mountpoint = os.fspath(mountpoint)
        self.name = name.encode()
        self.path = os.path.join(self.mountpoint, name)
        self.frontend = frontend_factory(self._readable)
        self._fd = -1
        self._opens: Dict[int, _Open] = {}
        self._by_handle: Dict[Handle, _Open] = {}
        self._next_fh = 1
        self.mounted = False

    def fileno(self) -> int:
        return self._fd

    # Mounting.

    def mount(self) -> None:
        """Mount the file system.

        :raises OSError: without ``/dev/fuse``, or when neither
            ``mount(2)`` (root) nor ``fusermount3`` works here.
        """
        if os.geteuid() == 0:
            self._fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
            options = ("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other"
                       % self._fd).encode()
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            if libc.mount(b"pyxs-xenbus", os.fsencode(self.mountpoint), b"fuse",
                          _MS_NOSUID | _MS_NODEV, options) != 0:
                err = ctypes.get_errno()
                os.close(self._fd)
                self._fd = -1
                raise OSError(err, "cannot mount a FUSE file system at %s: %s"
                              % (self.mountpoint, os.strerror(err)))
        else:
            self._fd = self._fusermount()
        self.mounted = True

    def _fusermount(self) -> int:
        helper = shutil.which("fusermount3") or shutil.which("fusermount")
        if helper is None:
            raise OSError(errno.EPERM, "serving a XenBus device needs root or "
                          "fusermount3 (Debian: apt-get install fuse3)")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            env = dict(os.environ, _FUSE_COMMFD=str(theirs.fileno()))
            proc = subprocess.run([helper, "-o", "rootmode=40000", "--", self.mountpoint],
                                  env=env, pass_fds=[theirs.fileno()],
                                  capture_output=True, text=True, timeout=30)
            theirs.close()
            if proc.returncode != 0:
                raise OSError(errno.EPERM, "%s failed: %s" % (helper, proc.stderr.strip()))
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
            if not fds:
                raise OSError(errno.EPERM, "%s sent no descriptor" % helper)
            return fds[0]
        finally:
            ours.close()
            theirs.close()

    def unmount(self) -> None:
        """Unmount (lazily: opens still alive get errors) and close."""
        if self.mounted:
            self.mounted = False
            unmount(self.mountpoint)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # Serving.

    def handle(self) -> bool:
        """Take and answer one request from the kernel; False once the
        file system is gone."""
        try:
            request = os.read(self._fd, _READ_BUFFER)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # the request was interrupted meanwhile
                return True
            if exc.errno == errno.ENODEV:  # unmounted
                return False
            raise
        _, opcode, unique, nodeid, _, _, _, _, _ = _IN_HEADER.unpack_from(request)
        args = request[_IN_HEADER.size:]
        method = self._OPS.get(opcode)
        if method is None:
            if opcode not in (_FORGET, _BATCH_FORGET):  # these get no answer
                self._answer(unique, -errno.ENOSYS)
            return True
        try:
            method(self, unique, nodeid, args)
        except Exception:  # a bug here must not leave the caller hanging
            log.exception("the XenBus device failed on FUSE request %d", opcode)
            self._answer(unique, -errno.EIO)
        return bool(opcode != _DESTROY)

    def _send(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except OSError as exc:
            # ENOENT: the caller was interrupted and no longer waits.
            if exc.errno not in (errno.ENOENT, errno.ENODEV):
                raise

    def _answer(self, unique: int, error: int = 0, data: bytes = b"") -> None:
        if error:
            data = b""
        self._send(_OUT_HEADER.pack(_OUT_HEADER.size + len(data), error, unique) + data)

    def _attr(self, nodeid: int) -> bytes:
        mode = 0o040755 if nodeid == _ROOT else 0o100666
        return _ATTR.pack(nodeid, 0, 0, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)

    def _init(self, unique: int, nodeid: int, args: bytes) -> None:
        major, minor = struct.unpack_from("=II", args)
        if major != 7:
            self._answer(unique, -errno.EPROTO)
            return
        # fuse_init_out of protocol 7.31: major, minor, max_readahead,
        # flags, max_background, congestion_threshold, max_write,
        # time_gran, max_pages, map_alignment, and unused words.
        reply = struct.pack("=IIIIHHIIHH8I", 7, min(minor, 31), 0, 0, 16, 12,
                            _MAX_WRITE, 1, 32, 0, *([0] * 8))
        self._answer(unique, 0, reply)

    def _lookup(self, unique: int, nodeid: int, args: bytes) -> None:
        if nodeid != _ROOT or args.rstrip(b"\0") != self.name:
            self._answer(unique, -errno.ENOENT)
            return
        self._answer(unique, 0, struct.pack("=QQQQII", _FILE, 0, 1, 1, 0, 0)
                     + self._attr(_FILE))

    def _getattr(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique, 0, struct.pack("=QII", 1, 0, 0) + self._attr(nodeid))

    def _open(self, unique: int, nodeid: int, args: bytes) -> None:
        if nodeid != _FILE:
            self._answer(unique, -errno.EISDIR)
            return
        fh = self._next_fh
        self._next_fh += 1
        opened = _Open(self.frontend.open())
        self._opens[fh] = opened
        self._by_handle[opened.handle] = opened
        # A stream, as Linux's device: no file position, so a read that
        # waits does not hold up a write from another thread.
        flags = _FOPEN_DIRECT_IO | _FOPEN_NONSEEKABLE | _FOPEN_STREAM
        self._answer(unique, 0, struct.pack("=QII", fh, flags, 0))

    def _opendir(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique, 0, struct.pack("=QII", 0, 0, 0))

    def _readdir(self, unique: int, nodeid: int, args: bytes) -> None:
        _, offset, _ = struct.unpack_from("=QQI", args)
        if offset:
            self._answer(unique, 0, b"")
            return
        # One fuse_dirent: ino, next offset, name length, type, name.
        entry = struct.pack("=QQII", _FILE, 1, len(self.name), 8) + self.name
        entry += b"\0" * (-len(entry) % 8)
        self._answer(unique, 0, entry)

    def _releasedir(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique)

    def _read(self, unique: int, nodeid: int, args: bytes) -> None:
        fh, _, size, _, _, flags = struct.unpack_from("=QQIIQI", args)
        opened = self._opens.get(fh)
        if opened is None:
            self._answer(unique, -errno.EBADF)
        elif opened.handle.replies:
            self._answer(unique, 0, self._take(opened, size))
        elif flags & os.O_NONBLOCK:
            self._answer(unique, -errno.EAGAIN)
        else:
            opened.blocked_read = (unique, size)

    def _take(self, opened: _Open, size: int) -> bytes:
        replies = opened.handle.replies
        data = bytes(replies[:size])
        del replies[:size]
        return data

    def _write(self, unique: int, nodeid: int, args: bytes) -> None:
        fh, _, size = struct.unpack_from("=QQI", args)
        opened = self._opens.get(fh)
        if opened is None:
            self._answer(unique, -errno.EBADF)
            return

        def done(result: int) -> None:
            if result < 0:
                self._answer(unique, result)
            else:
                self._answer(unique, 0, struct.pack("=II", result, 0))

        self.frontend.write(opened.handle, bytes(args[40:40 + size]), done)

    def _release(self, unique: int, nodeid: int, args: bytes) -> None:
        (fh,) = struct.unpack_from("=Q", args)
        opened = self._opens.pop(fh, None)
        if opened is not None:
            self._by_handle.pop(opened.handle, None)
            self.frontend.release(opened.handle)
        self._answer(unique)

    def _flush(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique)

    def _poll(self, unique: int, nodeid: int, args: bytes) -> None:
        fh, kh, flags, _ = struct.unpack_from("=QQII", args)
        opened = self._opens.get(fh)
        if opened is None:
            self._answer(unique, -errno.EBADF)
            return
        if opened.handle.replies:
            revents = select.POLLIN | select.POLLRDNORM
        else:
            revents = 0
            if flags & _POLL_SCHEDULE_NOTIFY:
                opened.poll_kh = kh
        self._answer(unique, 0, struct.pack("=II", revents, 0))

    def _interrupt(self, unique: int, nodeid: int, args: bytes) -> None:
        (target,) = struct.unpack_from("=Q", args)
        for opened in self._opens.values():
            if opened.blocked_read and opened.blocked_read[0] == target:
                opened.blocked_read = None
                self._answer(target, -errno.EINTR)

    def _destroy(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique)

    def _statfs(self, unique: int, nodeid: int, args: bytes) -> None:
        self._answer(unique, 0, struct.pack("=QQQQQIIII6I", *([0] * 5), 0, 255, 4096, 0,
                                            *([0] * 6)))

    def _readable(self, handle: Handle) -> None:
        opened = self._by_handle.get(handle)
        if opened is None or not handle.replies:
            return
        if opened.blocked_read is not None:
            unique, size = opened.blocked_read
            opened.blocked_read = None
            self._answer(unique, 0, self._take(opened, size))
        if opened.poll_kh is not None and handle.replies:
            kh, opened.poll_kh = opened.poll_kh, None
            self._send(_OUT_HEADER.pack(_OUT_HEADER.size + 8, _NOTIFY_POLL, 0)
                       + struct.pack("=Q", kh))

    _OPS: Dict[int, Callable[["FuseDevice", int, int, bytes], None]] = {
        _INIT: _init, _LOOKUP: _lookup, _GETATTR: _getattr, _OPEN: _open,
        _OPENDIR: _opendir, _READDIR: _readdir, _RELEASEDIR: _releasedir,
        _READ: _read, _WRITE: _write, _RELEASE: _release, _FLUSH: _flush,
        _POLL: _poll, _INTERRUPT: _interrupt, _DESTROY: _destroy, _STATFS: _statfs,
    }
