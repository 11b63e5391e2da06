"""Watch events received while another process writes; with *burst*, the
receiver takes none until the writer, writing one node at a time, has
finished.

Keys: (kind, implementation, placement) events per second, (kind + "cpu")
us of this process's CPU per event, (kind + "writer") and (kind +
"wall") ms, and for bursts ("burstworst") the writer's slowest write in
ms; kind is "watch" or "burst".
"""

from base import LOW, OLD, PYXS, rotate
from processes.harness import Watchdog, timed_watch


class PyxsReceiver:
    def __init__(self, client):
        self.client = client

    def watch(self, wpath):
        self.monitor = self.client.monitor()
        self.monitor.connect()
        self.monitor.watch(wpath, "bench")
        first = self.monitor.wait(timeout=30)
        assert first is not None and first.path == wpath, first

    def receive(self, n, timeout):
        wait = self.monitor.wait
        count = 0
        while count < n:
            if wait(None, timeout) is None:
                break
            count += 1
        return count

    def close(self):
        self.monitor.close()


class LowlevelReceiver:
    def __init__(self, ctx):
        self.ctx = ctx

    def watch(self, wpath):
        self.wpath = wpath
        self.h = self.ctx.lowlevel_handle()
        self.h.watch(wpath, "bench")
        path, _token = self.h.read_watch()  # XenStore's first event
        assert path == wpath, path

    def receive(self, n, timeout):
        dog = Watchdog(self.ctx.daemon.socket_path, self.wpath, n, timeout)
        read_watch = self.h.read_watch
        count = 0
        while count < n:
            read_watch()
            count += 1
        dog.cancel()
        return -1 if dog.fired else count

    def close(self):
        self.h.close()


def run(ctx, n, rounds, timeout, burst=False):
    results = ctx.results
    kind = "burst" if burst else "watch"
    for r, where in ctx.rounds(kind, rounds):
        for impl in rotate(ctx.impls, r):
            # The same nodes every time: each round has a new watch (on
            # a new connection) and drains all its events.
            wpath = "/bench/" + kind
            if impl == OLD:
                res = ctx.old.call(cmd=kind, wpath=wpath, n=n, timeout=timeout)
            else:
                receiver = PyxsReceiver(ctx.client) if impl == PYXS else LowlevelReceiver(ctx)
                res = timed_watch(ctx.daemon.socket_path, wpath, n, receiver, timeout, burst)
            results.add((kind, impl, where), n / res["wall"])
            results.add((kind + "cpu", impl, where), res["cpu"] / n * 1e6)
            results.add((kind + "writer", impl, where), res["writer"] * 1e3)
            results.add((kind + "wall", impl, where), res["wall"] * 1e3)
            if burst:
                results.add(("burstworst", impl, where), res["worst"] * 1e3)


def notes(results, placements):
    """How long the writer took, and how far behind it each receiver
    finished: when the lag is small the daemon, not the receiver, sets
    the pace."""
    out = []
    for where in placements:
        parts = []
        for impl in (PYXS, LOW, OLD):
            walls = results.samples.get(("watchwall", impl, where))
            writers = results.samples.get(("watchwriter", impl, where))
            if walls and writers:
                lags = sorted(w - x for w, x in zip(walls, writers))
                parts.append("%s: writer %.0f ms, last event %.1f ms after it"
                             % (impl, min(writers), lags[len(lags) // 2]))
        if parts:
            out.append("watch, %s (best writer time, median lag): %s"
                       % (where, "; ".join(parts)))
    return out
