"""The one scripted fake XenStore of pyxs's tests: a Unix-socket server
with one thread per accepted connection.

:class:`FakeServer` accepts connections and hands each, in a thread of its
own, to a function of the test's.  On it are built

* :class:`ScriptedServer`, for tests of the client's fault handling: each
  connection runs one *script* (a function of the :class:`Peer` that stands
  for it); connections beyond the scripts given are served honestly by a
  tiny in-memory XenStore, so that a test can check that the client, after
  a fault, reconnects and works again.  Every byte received is recorded,
  which lets a test prove that a refused request was never sent;
* the tests' own servers: a daemon answering each request through a
  function (tests/compat/test_units.py) and a byte-counting proxy
  (tests/client/test_monitor.py).

Scripted servers give up waiting for the client after
:data:`SERVER_PATIENCE` seconds, so no test can hang on one.
"""

import collections
import socket
import threading
import time

from pyxs._channel import covers
from pyxs._internal import Op, Packet, PacketDecoder

#: How long any single step of a scripted server waits for the client.
SERVER_PATIENCE = 10.0


class FakeServer:
    """A Unix-socket server at *path* that runs ``serve(sock, index)`` in a
    thread of its own for each connection it accepts (*index* counts them
    from 0).  The connection is closed when ``serve`` returns; what it
    raised is kept in :attr:`errors` as ``(index, exception)`` for the test
    to check (a ``serve`` that expects the client to go away catches
    OSError itself)."""

    def __init__(self, path, serve):
        self.path = self.socket_path = str(path)
        self.errors = []
        self._serve = serve
        self._lock = threading.Lock()
        self._connections = []
        self._threads = []
        self._stopping = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        # accept() is not woken by close() from another thread: poll.
        self._listener.settimeout(0.1)
        self.spawn(self._accept)

    def spawn(self, fn, *args):
        """Run ``fn(*args)`` in a daemon thread that :meth:`close` joins."""
        thread = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept(self):
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                index = len(self._connections)
                self._connections.append(sock)
            self.spawn(self._run, sock, index)

    def _run(self, sock, index):
        try:
            self._serve(sock, index)
        except Exception as e:  # reported by the test, never swallowed
            self.errors.append((index, e))
        finally:
            _hang_up(sock)

    def close(self):
        """Stop accepting, hang up on every connection and wait (bounded)
        for the threads to end."""
        self._stopping = True
        self._listener.close()
        with self._lock:
            connections, threads = list(self._connections), list(self._threads)
        for sock in connections:
            _hang_up(sock)
        for thread in threads:
            thread.join(SERVER_PATIENCE)


def _hang_up(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Peer:
    """One connection accepted by :class:`ScriptedServer`."""

    def __init__(self, server, sock, index):
        self.server = server
        self.sock = sock
        self.index = index
        self.received = bytearray()
        self.requests = []
        self.watches = []
        self.closed_by_client = threading.Event()
        self._decoder = PacketDecoder()
        self._queue = collections.deque()
        self._send_lock = threading.Lock()
        sock.settimeout(SERVER_PATIENCE)

    # Receiving.

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed_by_client.set()
            return False
        self.received += data
        for packet in self._decoder.feed(data):
            self.requests.append(packet)
            self._queue.append(packet)
        return True

    def next_request(self):
        """The next request, or None once the client closed the
        connection; raises socket.timeout when the client is silent."""
        while not self._queue:
            if not self._fill():
                return None
        return self._queue.popleft()

    def take(self, count, op=None):
        """The next *count* requests, each checked to be of type *op*."""
        requests = []
        for _ in range(count):
            request = self.next_request()
            assert request is not None, "the client closed the connection early"
            if op is not None:
                assert request.op is op, request
            requests.append(request)
        return requests

    def wait_for_close(self):
        """Read and drop everything until the client closes (bounded)."""
        try:
            while self._fill():
                pass
        except OSError:
            pass

    # Sending.

    def send(self, data):
        with self._send_lock:
            self.sock.sendall(bytes(data))

    def reply(self, request, payload, op=None):
        self.send(Packet(request.op if op is None else op, payload,
                         rq_id=request.rq_id, tx_id=request.tx_id))

    def event(self, path, token):
        self.send(Packet(Op.WATCH_EVENT, path + b"\0" + token + b"\0"))

    def close(self):
        _hang_up(self.sock)

    # Honest service.

    def answer(self, request):
        """Answer *request* as a (very small) XenStore would."""
        server, payload = self.server, request.payload
        args = payload.split(b"\0")
        op = request.op
        if op is Op.READ:
            value = server.store.get(args[0])
            if value is None:
                self.reply(request, b"ENOENT\0", Op.ERROR)
            else:
                self.reply(request, value)
        elif op is Op.WRITE:
            path, _, value = payload.partition(b"\0")
            server.store[path] = value
            self.reply(request, b"OK\0")
            server.fire(path)
        elif op is Op.MKDIR:
            server.store.setdefault(args[0], b"")
            self.reply(request, b"OK\0")
        elif op is Op.RM:
            for path in [p for p in server.store if covers(args[0], p)]:
                del server.store[path]
            self.reply(request, b"OK\0")
            server.fire(args[0])
        elif op is Op.DIRECTORY:
            prefix = args[0].rstrip(b"/") + b"/"
            names = sorted({p[len(prefix):].split(b"/")[0]
                            for p in server.store if p.startswith(prefix)})
            self.reply(request, b"".join(n + b"\0" for n in names))
        elif op is Op.WATCH:
            self.watches.append((args[0], args[1]))
            self.reply(request, b"OK\0")
            self.event(args[0], args[1])
        elif op is Op.UNWATCH:
            self.watches.remove((args[0], args[1]))
            self.reply(request, b"OK\0")
        elif op is Op.TRANSACTION_START:
            self.reply(request, b"1\0")
        elif op is Op.TRANSACTION_END:
            self.reply(request, b"OK\0")
        else:
            self.reply(request, b"ENOSYS\0", Op.ERROR)

    def serve(self, answer=None):
        """Answer each request with *answer* (by default honestly, with
        :meth:`answer`) until the client closes the connection."""
        answer = answer or self.answer
        try:
            while True:
                request = self.next_request()
                if request is None:
                    return
                answer(request)
        except OSError:
            pass   # The server is closing under the script.


def honest(peer):
    """The script of the connections beyond those scripted."""
    peer.serve()


class ScriptedServer(FakeServer):
    """A Unix-socket XenStore that follows a script per connection (see
    the module's description)."""

    def __init__(self, path, scripts=()):
        self.scripts = collections.deque(scripts)
        self.peers = []
        self.store = {}
        self._peers_lock = threading.Lock()
        super().__init__(path, self._follow_script)

    def _follow_script(self, sock, index):
        with self._peers_lock:
            peer = Peer(self, sock, index)
            self.peers.append(peer)
            script = self.scripts.popleft() if self.scripts else honest
        script(peer)

    def fire(self, path):
        """Send the watch event for a change of *path* to every connection
        watching it."""
        with self._peers_lock:
            peers = list(self.peers)
        for peer in peers:
            for wpath, token in list(peer.watches):
                if covers(wpath, path):
                    try:
                        peer.event(path, token)
                    except OSError:
                        pass

    def wait_for_peers(self, count, timeout=SERVER_PATIENCE):
        """The *count*-th connection, once it has come (bounded)."""
        deadline = time.monotonic() + timeout
        while len(self.peers) < count:
            assert time.monotonic() < deadline, "no connection %d came" % count
            time.sleep(0.01)
        return self.peers[count - 1]
