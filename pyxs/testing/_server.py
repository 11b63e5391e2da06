"""The emulator's I/O: a selector loop on a background thread.

It serves a Unix socket, where every accepted connection is domain 0 with
full privileges (as on the real daemon's socket), and optionally a
pseudo-terminal in raw mode that stands in for a XenBus device: a client
opens the terminal's path with ``O_RDWR`` and talks the same framing over
it, as one domain's ring connection.

With a XenBus path it also serves a guest's XenBus device: a FUSE file
(see :mod:`pyxs.testing._xenbus`) where every open is its own
conversation, multiplexed by Linux's rules onto one ring connection of
the guest's domain, and a symbolic link to it at the path asked for.

Frames are cut by the codec's :class:`~pyxs._internal.FrameDecoder`, which
passes on operations it does not know, for the store to answer; the
store sees every request in arrival order, one at a time, and says in
each :class:`~._outcome.Outcome` what to send and which connections to stop
serving.  The loop keeps what it has yet to write.

Connections end in one of three ways: the loop *closes* a peer whose
client went away (its descriptor is closed and the store forgets the
connection), *fails* one that broke the protocol or would have crashed
the daemon, and *abandons* a ring that failed or whose domain was
released: a ring cannot be closed, so its descriptor stays open, and
what arrives on it is ignored.
"""

import collections
import errno
import logging
import os
import selectors
import socket
import shutil
import stat
import tempfile
import tty
from typing import Deque, Dict, List, Optional, Union

from .._internal import READ_SIZE, Frame, FrameDecoder, OversizedFrame, Packet
from ..connection import wakeup_pipe
from ._model import Connection
from ._outcome import Outcome, duplicate_event
from ._store import Store
from ._xenbus import Frontend, FuseDevice

__all__ = ["Loop"]

log = logging.getLogger("pyxs.testing")


class _Peer:
    """One served file descriptor: a socket client or the pty master."""

    def __init__(self, fd: int, conn: Connection, sock: Optional[socket.socket]) -> None:
        self.fd = fd
        self.conn = conn
        self.sock = sock
        self.requests = FrameDecoder()
        #: Packets to write, after :attr:`outbuf`.
        self.queue: List[Packet] = []
        #: The bytes being written.
        self.outbuf = bytearray()
        self.abandoned = False

    def recv(self) -> bytes:
        if self.sock is not None:
            return self.sock.recv(READ_SIZE)
        return os.read(self.fd, READ_SIZE)

    def send(self, data: Union[bytes, bytearray]) -> int:
        if self.sock is not None:
            return self.sock.send(data)
        return os.write(self.fd, data)


class Loop:
    """The server loop.  :meth:`open` prepares every descriptor (so the
    socket accepts connections once it returns), :meth:`run` serves until
    :meth:`wake` is called after :attr:`stopping` is set, and
    :meth:`close` releases everything."""

    def __init__(self, store: Store, socket_path: str, pty: bool, pty_domid: int,
                 xenbus_path: Optional[str] = None, xenbus_domid: int = 0) -> None:
        self.store = store
        self._xenbus_path = xenbus_path
        self._xenbus_domid = xenbus_domid
        self._xenbus: Optional[FuseDevice] = None
        self._xenbus_conn: Optional[Connection] = None
        self._xenbus_dir: Optional[str] = None
        # What the device's kernel side put on the ring, cut into requests
        # the store has yet to see.
        self._ring_frames = FrameDecoder()
        self._ring_requests: Deque[Frame] = collections.deque()
        self.socket_path = socket_path
        self.pty_path: Optional[str] = None
        self._want_pty = pty
        self._pty_domid = pty_domid
        self.stopping = False
        self._selector = selectors.DefaultSelector()
        self._listener: Optional[socket.socket] = None
        self._wake_r = self._wake_w = -1
        self._pty_master = self._pty_slave = -1
        self._peers: Dict[int, _Peer] = {}
        self._by_conn: Dict[Connection, _Peer] = {}

    # Set-up and tear-down.

    def open(self) -> None:
        """Create the socket (and the pty and the XenBus device, if
        asked for); on failure, release what was made and raise."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self._wake_r, self._wake_w = wakeup_pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)  # a stale socket, as the daemon does
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.socket_path)
        except BaseException:
            # Not ours to unlink: whatever is at the path stays.
            listener.close()
            raise
        self._listener = listener
        os.chmod(self.socket_path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, None)
        if self._want_pty:
            self._pty_master, self._pty_slave = os.openpty()
            # Raw mode: no echo, no line editing, every byte passed as is.
            tty.setraw(self._pty_slave)
            self.pty_path = os.ttyname(self._pty_slave)
            os.set_blocking(self._pty_master, False)
            conn = self.store.connect(self._pty_domid, socket=False)
            # The slave stays open here too, so that clients may come and
            # go without the master seeing a hang-up.  From here on the
            # master is the peer's to close.
            self._add_peer(_Peer(self._pty_master, conn, None))
            self._pty_master = -1
        if self._xenbus_path is not None:
            self._open_xenbus()

    def _open_xenbus(self) -> None:
        """Mount the FUSE device in a directory of its own, link it at the
        path asked for, and give it its domain's ring connection.

        :raises FileExistsError: if something is at that path already.
        """
        path = self._xenbus_path
        assert path is not None  # Called only when a device is wanted.
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "already exists", path)
        self._xenbus_dir = tempfile.mkdtemp(prefix="pyxs-xenbus-")
        device = FuseDevice(self._xenbus_dir, "xenbus",
                            lambda readable: Frontend(self._put_on_ring, readable))
        device.mount()
        self._xenbus = device
        os.symlink(device.path, path)
        self._xenbus_conn = self.store.connect(self._xenbus_domid, socket=False)
        self._selector.register(device.fileno(), selectors.EVENT_READ, device)

    def _close_xenbus(self) -> None:
        """Unmount the device and remove its link and directory (each
        once; also after a partial :meth:`_open_xenbus`)."""
        if self._xenbus is not None:
            try:
                self._selector.unregister(self._xenbus.fileno())
            except (KeyError, ValueError):
                pass
            self._xenbus.unmount()
            self._xenbus = None
            assert self._xenbus_path is not None  # Set with the device.
            try:
                os.unlink(self._xenbus_path)
            except OSError:
                pass
        if self._xenbus_dir is not None:
            shutil.rmtree(self._xenbus_dir, ignore_errors=True)
            self._xenbus_dir = None

    def _serve_xenbus(self) -> None:
        """Serve the device's pending FUSE requests; it closes when it was
        unmounted from outside."""
        assert self._xenbus is not None  # Registered with the selector only when open.
        if not self._xenbus.handle():
            self._close_xenbus()
            return
        self._run_ring()

    def _put_on_ring(self, data: bytes) -> None:
        """The device's kernel side writes *data* to the ring."""
        self._ring_requests.extend(self._ring_frames.feed(data))

    def _run_ring(self) -> None:
        """Hand the store the requests on the ring, in order, also those
        put there meanwhile; replies and events go back through
        _dispatch."""
        requests, conn = self._ring_requests, self._xenbus_conn
        assert conn is not None  # Set with the device.
        while requests:
            op, rq_id, tx_id, payload = requests.popleft()
            self._dispatch(self.store.handle_raw(conn, op, rq_id, tx_id, payload))

    def close(self) -> None:
        """Close every descriptor; the store forgets every connection."""
        self._close_xenbus()
        for peer in list(self._peers.values()):
            self._close(peer, notify=False)
        if self._listener is not None:
            try:
                self._selector.unregister(self._listener)
            except (KeyError, ValueError):
                pass
            self._listener.close()
            self._listener = None
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self._wake_r >= 0:
            try:
                self._selector.unregister(self._wake_r)
            except (KeyError, ValueError):
                pass
        # The pty master is still here only when open() failed before
        # handing it to its peer.
        for name in ("_pty_master", "_pty_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        self._selector.close()

    def wake(self) -> None:
        """Make :meth:`run` look at :attr:`stopping` (from any thread)."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # a full pipe wakes the loop anyway

    # Serving.

    def run(self) -> None:
        """Serve until :attr:`stopping` is set and :meth:`wake` called."""
        while not self.stopping:
            for key, events in self._selector.select():
                if key.fileobj is self._listener:
                    self._accept()
                elif key.data is self._xenbus and key.data is not None:
                    self._serve_xenbus()
                elif key.fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    peer = key.data
                    if not self._serving(peer):
                        continue  # ended earlier in this round
                    if events & selectors.EVENT_READ:
                        self._readable(peer)
                    if self._serving(peer) and events & selectors.EVENT_WRITE:
                        self._writable(peer)

    def _serving(self, peer: _Peer) -> bool:
        # By identity, not by descriptor number: a peer closed earlier in
        # a round may have its number reused by a client accepted since.
        return self._peers.get(peer.fd) is peer

    def _add_peer(self, peer: _Peer) -> None:
        """Serve *peer*: read from it from now on."""
        self._peers[peer.fd] = peer
        self._by_conn[peer.conn] = peer
        self._selector.register(peer.fd, selectors.EVENT_READ, peer)

    def _accept(self) -> None:
        """Accept every pending client, each a new domain 0 connection."""
        listener = self._listener
        assert listener is not None  # Registered with the selector only when open.
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._add_peer(_Peer(sock.fileno(), self.store.connect(), sock))

    def _close(self, peer: _Peer, *, notify: bool = True) -> None:
        """Stop serving *peer* and close its descriptor (once); if
        *notify*, the store closes its connection too."""
        if not self._serving(peer):
            return
        del self._peers[peer.fd]
        self._by_conn.pop(peer.conn, None)
        try:
            self._selector.unregister(peer.fd)
        except (KeyError, ValueError):
            pass
        if notify:
            self._dispatch(self.store.close(peer.conn))
        if peer.sock is not None:
            peer.sock.close()
        else:
            os.close(peer.fd)

    def _readable(self, peer: _Peer) -> None:
        """Read what *peer* sent and process it; a socket closed by its
        client is closed here too."""
        try:
            data = peer.recv()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if peer.sock is None and exc.errno == errno.EIO:
                return  # no slave open right now (cannot happen while we hold it)
            self._close(peer)
            return
        if not data:
            if peer.sock is not None:
                self._close(peer)
            return
        if peer.abandoned:
            return
        self._process(peer, data)

    def _process(self, peer: _Peer, data: bytes) -> None:
        """Hand the store each whole request that *data* completes in
        *peer*'s input, in order, and dispatch the outcomes; stop at the
        first request that ends *peer*.  A header announcing more than
        :data:`~pyxs._internal.PAYLOAD_MAX` bytes fails *peer*, once the
        requests before it are handled."""
        oversized: Optional[OversizedFrame] = None
        try:
            requests: List[Frame] = peer.requests.feed(data)
        except OversizedFrame as exc:
            requests, oversized = exc.before, exc
        conn = peer.conn
        for op, rq_id, tx_id, payload in requests:
            try:
                outcome = self.store.handle_raw(conn, op, rq_id, tx_id, payload)
            except Exception:  # a bug in the store: spare the other clients
                log.exception("the emulator failed on a request (op %d); "
                              "ending the connection", op)
                self.store.fail(conn)
                self._fail(peer)
                return
            if conn in outcome.failed:
                log.warning("xenstored would have crashed on that request "
                            "(op %d); ending the connection", op)
            self._dispatch(outcome)
            if not self._serving(peer) or peer.abandoned:
                return
        if oversized is not None:
            log.info("failing a connection that sent a %d-byte frame", oversized.size)
            self._fail(peer)

    def _fail(self, peer: _Peer) -> None:
        """*peer* broke the protocol, or its request would have crashed the
        daemon: close a socket, abandon a ring."""
        if peer.sock is not None:
            self._close(peer)
        else:
            self._abandon(peer)

    def _abandon(self, peer: _Peer) -> None:
        """Serve ring *peer* no more, keeping its descriptor open; what it
        has yet to be sent is dropped."""
        self.store.abandon(peer.conn)
        peer.abandoned = True
        del peer.outbuf[:]
        del peer.queue[:]
        self._update(peer)

    def _dispatch(self, outcome: Outcome) -> None:
        """Queue and write the packets of *outcome*, and stop serving the
        connections it ended."""
        for conn in outcome.reset:
            reset = self._by_conn.get(conn)
            if reset is not None:
                del reset.queue[:]
        touched = []
        for conn, packet in outcome.packets:
            if conn is self._xenbus_conn:
                assert self._xenbus is not None  # Set with the connection.
                self._xenbus.frontend.ring_input(bytes(packet))
                continue
            peer = self._by_conn.get(conn)
            if peer is None or peer.abandoned or duplicate_event(packet, peer.queue):
                continue
            peer.queue.append(packet)
            if peer not in touched:
                touched.append(peer)
        for peer in touched:
            self._writable(peer)
        for conn in outcome.failed + outcome.closed:
            if conn is self._xenbus_conn:
                assert self._xenbus is not None  # Set with the connection.
                self._xenbus.frontend.abandon()
                continue
            peer = self._by_conn.get(conn)
            if peer is None or not self._serving(peer) or peer.abandoned:
                continue
            if conn in outcome.failed:
                self._fail(peer)
            else:
                # Only a ring's domain is released, and a ring cannot be
                # closed.
                self._abandon(peer)
        if self._ring_requests:
            self._run_ring()  # the device's kernel side answered an event

    def _writable(self, peer: _Peer) -> None:
        """Write as much of *peer*'s output as it takes now; a socket that
        fails is closed."""
        queued = peer.queue
        while True:
            if not peer.outbuf:
                if not queued:
                    break
                peer.outbuf += bytes(queued.pop(0))
            try:
                sent = peer.send(peer.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(peer)
                return
            del peer.outbuf[:sent]
        self._update(peer)

    def _update(self, peer: _Peer) -> None:
        """Ask the selector for writability exactly while *peer* has
        output waiting."""
        if not self._serving(peer):
            return
        events = selectors.EVENT_READ
        if peer.outbuf or peer.queue:
            events |= selectors.EVENT_WRITE
        try:
            self._selector.modify(peer.fd, events, peer)
        except (KeyError, ValueError):
            pass

