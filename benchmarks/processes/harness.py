"""What the helper processes share with the main benchmark process: a
pipelined raw writer, the timing of a loop, and the watch harness.

Standard library only (see ``__init__.py``).
"""

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WRITER = os.path.join(HERE, "writer.py")

XS_WRITE, XS_ERROR = 11, 16
HEADER = struct.Struct("=IIII")  # type, req_id, tx_id, len; native endian

perf_counter, process_time = time.perf_counter, time.process_time


def timed_loop(f, args, n):
    """Call ``f(*args)`` *n* times; return (wall seconds, CPU seconds)."""
    rng = range(n)
    c0, t0 = process_time(), perf_counter()
    for _ in rng:
        f(*args)
    return perf_counter() - t0, process_time() - c0


# The raw writer.

def pipelined_writes(sock_path, items):
    """WRITE each ``(path, value)`` (bytes) on a new connection, keeping
    several requests in flight."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sock_path)
        write_on(sock, items)


def write_on(sock, items, depth=64):
    """WRITE each ``(path, value)`` on *sock*, up to *depth* in flight."""
    buf = bytearray()
    sent = done = 0
    total = len(items)
    while done < total:
        room = depth - (sent - done)
        if room >= depth // 2 and sent < total:
            frames = []
            for i in range(sent, min(total, sent + room)):
                payload = items[i][0] + b"\0" + items[i][1]
                frames.append(HEADER.pack(XS_WRITE, i, 0, len(payload)) + payload)
            sock.sendall(b"".join(frames))
            sent += len(frames)
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the daemon closed the writer's connection")
        buf += chunk
        while len(buf) >= HEADER.size:
            op, _rid, _tx, size = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + size:
                break
            if op == XS_ERROR:
                raise RuntimeError("WRITE failed: %r"
                                   % bytes(buf[HEADER.size:HEADER.size + size]))
            del buf[:HEADER.size + size]
            done += 1


def writer_items(wpath, n, value=b"v"):
    """Writes of *n* distinct nodes below *wpath*.  Distinct, because C
    xenstored 4.17 drops a watch event identical to one still queued for
    the same connection (XSA-326): rewriting a few nodes in a loop would
    lose events whenever the receiver falls behind."""
    return [(("%s/k%d" % (wpath, i)).encode(), value) for i in range(n)]


# The watch harness.

def helper_env():
    """Environment for helper processes: no PYTHONPATH, so that the 0.4.1
    worker imports the installed pyxs and not the checkout's."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def timed_watch(sock_path, wpath, n, receiver, timeout, burst=False):
    """Start a writer process; once it is ready, let *receiver* watch
    *wpath* (and take XenStore's first event), then time from the "go"
    (right before the first write) to the last of *n* events received.
    With *burst*, the receiver is busy elsewhere (takes no event) until
    the writer, writing one node at a time, has finished.

    *receiver* has ``watch(wpath)``, ``receive(n, timeout) -> count`` and
    ``close()``; the CPU time is this process's own (all its threads).
    """
    writer = subprocess.Popen(
        [sys.executable, WRITER, "burst" if burst else "pipelined", sock_path, wpath, str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=helper_env())
    try:
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("the watch writer failed to start")
        receiver.watch(wpath)
        cpu0, t0 = process_time(), perf_counter()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        if burst:
            out, _ = writer.communicate(timeout=timeout)
        got = receiver.receive(n, timeout)
        wall, cpu = perf_counter() - t0, process_time() - cpu0
        if not burst:
            out, _ = writer.communicate(timeout=timeout)
        written = json.loads(out.strip().splitlines()[-1])
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        receiver.close()
    if got != n:
        raise RuntimeError("received %d of %d watch events within %ss" % (got, n, timeout))
    return {"wall": wall, "cpu": cpu, "writer": written["elapsed"],
            "worst": written.get("worst")}


class Watchdog:
    """For receivers that block without a timeout: after *timeout* seconds
    write *n* more events from another connection, so the loop ends (the
    round is then reported as failed by the count check)."""

    def __init__(self, sock_path, wpath, n, timeout):
        self.fired = False
        self._args = (sock_path, wpath, n)
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self):
        self.fired = True
        sock_path, wpath, n = self._args
        pipelined_writes(sock_path, writer_items(wpath + "/watchdog", n))

    def cancel(self):
        self._timer.cancel()
