"""Sequential round trips: read, write and ls, one request at a time.

Keys: ("seq", op, implementation, placement) in operations per second,
("seqcpu", ...) in microseconds of this process's CPU per operation.
Reads are also measured on a xen.lowlevel.xs handle that has set a watch
(:data:`LOW_WATCHED`), whose replies go through libxenstore's reader
thread: the cost of that state, shown in the notes; and by a bare loop
of the system calls (:data:`BARE`), what is left when nothing is
numbered or checked, also in the notes.  And with a busy
process on the clients' CPU, as on a loaded management domain: keys
("seqbusy", implementation, placement), reads per second.
"""

import os
import select
import socket
import subprocess
import sys

from base import LOW, OLD, PYXS, rotate
from processes.harness import timed_loop

from pyxs._internal import HEADER, Op, encode_frame

LOW_WATCHED = "xen.lowlevel.xs, a handle with a watch"
BARE = "a bare Python loop"

PATH, VALUE = "/bench/seq/key", "value-0123456789"
WRITTEN, LISTED = "/bench/seq/written", "/bench/seq/dir"


def run(ctx, n, rounds):
    client, h, old, results = ctx.client, ctx.h, ctx.old, ctx.results
    h.write("", PATH, VALUE)
    for i in range(8):
        h.write("", "%s/child%d" % (LISTED, i), "v")
    calls = {
        PYXS: {"read": (client.read, (PATH,)),
               "write": (client.write, (WRITTEN, VALUE)),
               "ls": (client.ls, (LISTED,))},
        LOW: {"read": (h.read, ("", PATH)),
              "write": (h.write, ("", WRITTEN, VALUE)),
              "ls": (h.ls, ("", LISTED))},
    }
    for r, where in ctx.rounds("sequential", rounds, warm_up=True):
        count = max(1, n // 10) if r == 0 else n
        for op in ("read", "write", "ls"):
            for impl in rotate(ctx.impls, r):
                if impl == OLD:
                    target = {"read": PATH, "write": WRITTEN, "ls": LISTED}[op]
                    res = old.call(cmd="seq", op=op, n=count, path=target, value=VALUE)
                    wall, cpu = res["wall"], res["cpu"]
                else:
                    f, fargs = calls[impl][op]
                    wall, cpu = timed_loop(f, fargs, count)
                if r == 0:
                    continue
                results.add(("seq", op, impl, where), n / wall)
                results.add(("seqcpu", op, impl, where), cpu / n * 1e6)
        if r:
            for impl, measure in ((LOW_WATCHED, _watched_handle_reads), (BARE, _bare_reads)):
                wall, cpu = measure(ctx, n)
                results.add(("seq", "read", impl, where), n / wall)
                results.add(("seqcpu", "read", impl, where), cpu / n * 1e6)
            # A tenth as many: a client that yields its CPU to the busy
            # process may wait a whole time slice for each reply.
            count = max(1, n // 10)
            for impl, wall in _reads_beside_a_busy_process(calls, count, r):
                results.add(("seqbusy", impl, where), count / wall)


def _reads_beside_a_busy_process(calls, n, r):
    """(implementation, wall time) of *n* reads by pyxs and by
    xen.lowlevel.xs while a process that never sleeps shares their CPU
    (it inherits this process's CPU affinity)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        return [(impl, timed_loop(*calls[impl]["read"], n)[0])
                for impl in rotate([PYXS, LOW], r)]
    finally:
        busy.kill()
        busy.wait()


def _watched_handle_reads(ctx, n):
    """*n* reads on a new handle that has set a watch (and so started its
    reader thread); closed afterwards, which ends the thread."""
    h = ctx.lowlevel_handle()
    try:
        h.watch("/bench/seq/watched", "bench")
        h.read_watch()  # XenStore's first event: the thread is running
        return timed_loop(h.read, ("", PATH), n)
    finally:
        h.close()


def _bare_reads(ctx, n):
    """*n* reads by a loop of the system calls alone, as pyxs makes them
    (one write, a poll, one read), numbering nothing and checking
    nothing: the floor that pyxs's bookkeeping stands on."""
    request = encode_frame(Op.READ, 0, 0, PATH.encode() + b"\0")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(ctx.daemon.socket_path)
        sock.setblocking(False)
        fd = sock.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        wait, write, read, size = poll.poll, os.write, os.read, HEADER.size

        def one_read():
            write(fd, request)
            reply = b""
            # xenstored may write the header and the payload apart.
            while len(reply) < size or len(reply) < size + HEADER.unpack_from(reply)[3]:
                wait()
                reply += read(fd, 4096)
        return timed_loop(one_read, (), n)


def notes(results, placements):
    """What a watch on the handle costs xen.lowlevel.xs's reads, and what
    the system calls alone cost."""
    out = []
    for where in placements:
        best = {impl: (results.best(("seq", "read", impl, where), True),
                       results.best(("seqcpu", "read", impl, where), False))
                for impl in (LOW, LOW_WATCHED, BARE, PYXS)}
        if None not in best[LOW] + best[LOW_WATCHED]:
            out.append("xen.lowlevel.xs reads, %s (best rounds): %.0f/s and %.2f us CPU each "
                       "on the benchmark's handle, %.0f/s and %.2f us on a handle with a "
                       "watch (its reader thread)" % ((where,) + best[LOW] + best[LOW_WATCHED]))
        if None not in best[BARE] + best[PYXS]:
            out.append("reads, %s (best rounds): %.0f/s and %.2f us CPU each by a bare Python "
                       "loop of the same system calls (nothing numbered or checked), "
                       "%.0f/s and %.2f us by pyxs" % ((where,) + best[BARE] + best[PYXS]))
    return out
