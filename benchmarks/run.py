#!/usr/bin/env python3
"""Benchmark pyxs against Xen's own clients on a real XenStore daemon.

From a checkout, with nothing installed::

    python3 benchmarks/run.py                 # full run, a few minutes
    python3 benchmarks/run.py --quick         # smoke run, well under a minute
    python3 benchmarks/run.py --daemon oxenstored --output table.rst

The script starts Xen 4.17's C ``xenstored`` (or ``oxenstored``) exactly
as the test fixtures do (``tests/realdaemons.py``) and measures, in one
run and interleaving the implementations round by round so that load on
the machine hits all of them alike:

* sequential round trips per second, and the client's own CPU time per
  operation, for read, write and directory listing: pyxs against Xen's C
  extension ``xen.lowlevel.xs`` and against pyxs 0.4.1 from PyPI (which
  the script installs into a throw-away virtual environment in the cache
  directory and drives in a subprocess);
* reading a whole tree (values and children) with ``Client.walk`` and
  ``Client.read_many``, against ``xenstore-ls -f`` and a recursive loop
  over ``xen.lowlevel.xs``;
* watch events received per second while another process writes;
* the same with the watcher busy elsewhere (taking no event) until the
  writer, writing one node at a time, is done: the writer's slowest
  write (a daemon holding unread events may stall it) and the events
  received per second over the whole burst.

It prints the environment and ONE table; ``--output FILE`` also writes
the table as reStructuredText.  Needs CPython 3.11 (for Xen's C
extension), root for ``oxenstored``, and apt access the first time (see
tests/realdaemons.py).  ``docs/performance.rst`` explains the rows.
"""

# This file is also run, with other interpreters, as two helper
# processes: "--_worker041" (inside the pyxs 0.4.1 virtual environment:
# it must import the *installed* pyxs, never the checkout's) and
# "--_writer" (the watch benchmark's writer).  Both use the standard
# library only, so the checkout is put on sys.path in main() alone.

import argparse
import json
import os
import struct
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

OLD_PYXS = "0.4.1"
XS_WRITE, XS_ERROR = 11, 16
_HEADER = struct.Struct("=IIII")  # type, req_id, tx_id, len; native endian

perf_counter, process_time = time.perf_counter, time.process_time


# --------------------------------------------------------------------------
# Shared by every process: a pipelined raw writer, and the watch harness
# --------------------------------------------------------------------------

def pipelined_writes(sock_path, items):
    """WRITE each ``(path, value)`` (bytes) on a new connection, keeping
    several requests in flight; standard library only, so that the
    writer is the same whichever client receives the events."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sock_path)
        _write_on(sock, items)


def _write_on(sock, items, depth=64):
    buf = bytearray()
    sent = done = 0
    total = len(items)
    while done < total:
        room = depth - (sent - done)
        if room >= depth // 2 and sent < total:
            frames = []
            for i in range(sent, min(total, sent + room)):
                payload = items[i][0] + b"\0" + items[i][1]
                frames.append(_HEADER.pack(XS_WRITE, i, 0, len(payload)) + payload)
            sock.sendall(b"".join(frames))
            sent += len(frames)
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the daemon closed the writer's connection")
        buf += chunk
        while len(buf) >= _HEADER.size:
            op, _rid, _tx, size = _HEADER.unpack_from(buf)
            if len(buf) < _HEADER.size + size:
                break
            if op == XS_ERROR:
                raise RuntimeError("WRITE failed: %r"
                                   % bytes(buf[_HEADER.size:_HEADER.size + size]))
            del buf[:_HEADER.size + size]
            done += 1


def writer_items(wpath, n, value=b"v"):
    """Writes of *n* distinct nodes below *wpath*.  Distinct, because C
    xenstored 4.17 drops a watch event identical to one still queued for
    the same connection (XSA-326): rewriting a few nodes in a loop would
    lose events whenever the receiver falls behind."""
    return [(("%s/k%d" % (wpath, i)).encode(), value) for i in range(n)]


def writer_main(sock_path, wpath, n):
    """The watch benchmark's writer process: create the nodes, say
    "ready", wait for "go", then make *n* pipelined writes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sock_path)
        _write_on(sock, writer_items(wpath, n))  # the nodes exist first
        items = writer_items(wpath, n, b"new value")
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        t0 = perf_counter()
        _write_on(sock, items)
        print(json.dumps({"elapsed": perf_counter() - t0}), flush=True)


def burst_writer_main(sock_path, wpath, n):
    """The burst benchmark's writer process: like the watch writer, but
    one write at a time, timing each (a daemon that stalls the writer
    while a watcher's events pile up shows as the slowest write)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sock_path)
        _write_on(sock, writer_items(wpath, n))
        items = writer_items(wpath, n, b"new value")
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        # A stalled daemon must not hang the benchmark.
        sock.settimeout(60)
        worst = 0.0
        t0 = perf_counter()
        for i in range(n):
            start = perf_counter()
            _write_on(sock, items[i:i + 1], depth=1)
            worst = max(worst, perf_counter() - start)
        print(json.dumps({"elapsed": perf_counter() - t0, "worst": worst}), flush=True)


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
        [sys.executable, os.path.abspath(__file__), "--_burst_writer" if burst else "--_writer",
         sock_path, wpath, str(n)],
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


# --------------------------------------------------------------------------
# The pyxs 0.4.1 worker (runs in its own virtual environment)
# --------------------------------------------------------------------------

def _loop(f, args, n):
    """Call ``f(*args)`` *n* times; return (wall seconds, CPU seconds)."""
    rng = range(n)
    c0, t0 = process_time(), perf_counter()
    for _ in rng:
        f(*args)
    return perf_counter() - t0, process_time() - c0


def worker041_main(sock_path):
    """Serve JSON commands on stdin, one a line, answering on stdout."""
    import pyxs
    where = os.path.abspath(pyxs.__file__)
    if not where.startswith(os.path.abspath(sys.prefix) + os.sep):
        raise SystemExit("worker imported pyxs from %s, not from %s" % (where, sys.prefix))
    from pyxs import Client

    client = Client(unix_socket_path=sock_path)
    client.connect()
    print(json.dumps({"ready": True, "pyxs": where}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        what = cmd["cmd"]
        if what == "quit":
            break
        if what == "seq":
            op, path = cmd["op"], cmd["path"].encode()
            if op == "read":
                f, args = client.read, (path,)
            elif op == "write":
                f, args = client.write, (path, cmd["value"].encode())
            else:
                f, args = client.list, (path,)
            wall, cpu = _loop(f, args, cmd["n"])
            result = {"wall": wall, "cpu": cpu}
        elif what == "walk":
            c0, t0 = process_time(), perf_counter()
            count = sum(1 for _ in client.walk(cmd["top"].encode()))
            result = {"wall": perf_counter() - t0, "cpu": process_time() - c0,
                      "count": count}
        elif what in ("watch", "burst"):
            result = timed_watch(sock_path, cmd["wpath"], cmd["n"],
                                 _Receiver041(client, sock_path), cmd["timeout"],
                                 burst=what == "burst")
        else:
            raise SystemExit("unknown command %r" % what)
        print(json.dumps(result), flush=True)
    client.close()


class _Receiver041:
    def __init__(self, client, sock_path):
        self.client, self.sock_path = client, sock_path

    def watch(self, wpath):
        self.wpath = wpath
        self.monitor = self.client.monitor()
        self.monitor.watch(wpath.encode(), b"bench")
        self.events = self.monitor.wait()
        next(self.events)  # XenStore's first event, for the watched path

    def receive(self, n, timeout):
        dog = Watchdog(self.sock_path, self.wpath, n, timeout)
        count = 0
        for _ in self.events:
            count += 1
            if count == n:
                break
        dog.cancel()
        return -1 if dog.fired else count

    def close(self):
        self.monitor.close()


# --------------------------------------------------------------------------
# Main process
# --------------------------------------------------------------------------

class Results:
    """Per-round samples of every measurement, by key."""

    def __init__(self):
        self.samples = {}

    def add(self, key, value):
        self.samples.setdefault(key, []).append(value)

    def best(self, key, higher_better):
        values = self.samples.get(key)
        if not values:
            return None
        return max(values) if higher_better else min(values)

    def ratios(self, key, other_key, higher_better):
        """pyxs's advantage in each round: the two measurements of a round
        were made back to back, so each ratio compares like with like even
        when the machine's speed drifts from round to round."""
        mine, theirs = self.samples.get(key), self.samples.get(other_key)
        if not mine or not theirs:
            return []
        return [(a / b if higher_better else b / a) for a, b in zip(mine, theirs)
                if a > 0 and b > 0]

    def advantage(self, key, other_key, higher_better):
        """(median, lowest, highest) of the per-round ratios, or None."""
        ratios = sorted(self.ratios(key, other_key, higher_better))
        if not ratios:
            return None
        k = len(ratios)
        median = ratios[k // 2] if k % 2 else (ratios[k // 2 - 1] + ratios[k // 2]) / 2
        return median, ratios[0], ratios[-1]


class OldPyxs:
    """pyxs 0.4.1 in a virtual environment, driven in a subprocess."""

    def __init__(self, python, sock_path):
        self.proc = subprocess.Popen(
            [python, "-I", os.path.abspath(__file__), "--_worker041", sock_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=helper_env())
        hello = self._answer()
        self.where = hello["pyxs"]

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the pyxs %s worker died (exit %s)"
                               % (OLD_PYXS, self.proc.wait()))
        return json.loads(line)

    def call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call(cmd="quit")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def old_pyxs_python(realdaemons, log):
    """The python of a virtual environment holding pyxs 0.4.1 from PyPI,
    made on first use in the cache directory (under a lock; built aside and
    renamed into place, so a half-made one is never used)."""
    import fcntl
    import shutil
    import tempfile

    cache = realdaemons.cache_dir()
    tag = "py%d%d" % sys.version_info[:2]
    venv = cache / ("bench-venv-pyxs-%s-%s" % (OLD_PYXS, tag))
    python = venv / "bin" / "python"
    stamp = venv / ".pyxs-bench-ok"
    if stamp.exists():
        return str(python)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock-bench-venv", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return str(python)
        log("creating a virtual environment with pyxs==%s in %s ..." % (OLD_PYXS, venv))
        work = tempfile.mkdtemp(prefix="bench-venv-", dir=str(cache))
        try:
            subprocess.run([sys.executable, "-m", "venv", work], check=True,
                           capture_output=True, timeout=120)
            proc = subprocess.run(
                [os.path.join(work, "bin", "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", "--no-input", "--timeout", "20",
                 "--retries", "1", "pyxs==%s" % OLD_PYXS],
                capture_output=True, text=True, timeout=180, env=helper_env())
            if proc.returncode != 0:
                raise RuntimeError("pip install pyxs==%s failed:\n%s"
                                   % (OLD_PYXS, proc.stderr.strip()[-2000:]))
            open(os.path.join(work, ".pyxs-bench-ok"), "w").close()
            if venv.exists():
                shutil.rmtree(str(venv))
            os.rename(work, str(venv))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return str(python)


def rotate(items, r):
    k = r % len(items)
    return items[k:] + items[:k]


def tree_shape(nodes):
    """(dirs, leaves per dir) for a tree of exactly *nodes* nodes: a
    root, ~sqrt(nodes) directories, and leaves spread evenly below them."""
    dirs = max(1, int(nodes ** 0.5) - 1)
    leaves = nodes - 1 - dirs
    return [leaves // dirs + (1 if i < leaves % dirs else 0) for i in range(dirs)]


def build_tree(h, top, nodes):
    """Write the benchmark tree with xen.lowlevel.xs; return its paths."""
    paths = [top]
    h.write("", top, "")
    for d, count in enumerate(tree_shape(nodes)):
        dpath = "%s/dir%03d" % (top, d)
        h.write("", dpath, "")
        paths.append(dpath)
        for i in range(count):
            path = "%s/node%04d" % (dpath, i)
            h.write("", path, "value-%d-%d" % (d, i))
            paths.append(path)
    assert len(paths) == nodes, (len(paths), nodes)
    return paths


def walk_lowlevel(h, path):
    """Recursive ls + read over xen.lowlevel.xs; returns the node count."""
    h.read("", path)
    count = 1
    for child in h.ls("", path) or ():
        count += walk_lowlevel(h, path + "/" + child)
    return count


def walk_pyxs_sequential(c, path):
    """The same recursive ls + read with pyxs, one round trip at a time."""
    c.read(path)
    count = 1
    for child in c.ls(path):
        count += walk_pyxs_sequential(c, path + "/" + child)
    return count


def timed(fn, *args):
    """Run fn(*args): (wall, cpu, result)."""
    c0, t0 = process_time(), perf_counter()
    result = fn(*args)
    return perf_counter() - t0, process_time() - c0, result


def timed_process(argv, env, timeout=120):
    """Run a process, capturing stdout: (wall, its user+sys CPU, stdout)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    wall = perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s" % (argv, proc.stderr.decode(errors="replace")))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


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
    def __init__(self, realdaemons, daemon):
        self.realdaemons, self.daemon = realdaemons, daemon

    def watch(self, wpath):
        self.wpath = wpath
        self.h = self.realdaemons.open_lowlevel_xs(self.daemon)
        self.h.watch(wpath, "bench")
        path, _token = self.h.read_watch()  # XenStore's first event
        assert path == wpath, path

    def receive(self, n, timeout):
        dog = Watchdog(self.daemon.socket_path, self.wpath, n, timeout)
        read_watch = self.h.read_watch
        count = 0
        while count < n:
            read_watch()
            count += 1
        dog.cancel()
        return -1 if dog.fired else count

    def close(self):
        self.h.close()


# Labels of the implementations, as they appear in the table.
PYXS = "pyxs"
LOW = "xen.lowlevel.xs"
OLD = "pyxs %s" % OLD_PYXS


class Placement:
    """Where the daemon runs, relative to the clients.

    The benchmark process, and so every client and helper it starts (they
    inherit its CPU affinity), stays on one CPU; the daemon is moved,
    round by round, onto that CPU ("1 CPU") or onto another one ("2 CPUs").
    Left to the scheduler, the placement changes at random, and on a
    virtual machine a round trip between two CPUs costs several times one
    on a single CPU (waking an idle virtual CPU goes through the
    hypervisor), so unpinned measurements jump between two speeds.
    """

    def __init__(self, name, cpu):
        self.name, self.cpu = name, cpu

    def apply(self, daemon):
        # Every thread of the daemon (oxenstored may have several).
        for tid in os.listdir("/proc/%d/task" % daemon.pid):
            try:
                os.sched_setaffinity(int(tid), {self.cpu})
            except OSError:
                pass  # a thread that just ended


def placements_for(log):
    """Pin this process to its first usable CPU; return the placements
    the machine allows (None: no pinning possible)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})
    except (AttributeError, OSError):
        log("cannot pin to CPUs here: the daemon runs wherever the scheduler says")
        return [None]
    result = [Placement("1 CPU", cpus[0])]
    if len(cpus) > 1:
        result.append(Placement("2 CPUs", cpus[1]))
    else:
        log("only one usable CPU: no '2 CPUs' placement")
    return result


def run(args, log):
    sys.path.insert(0, REPO)
    from tests import support as realdaemons
    import tempfile

    try:
        realdaemons.load_lowlevel_xs()  # only to know it loads
        version = realdaemons.xen_version()
        realdaemons.c_client("xenstore-ls")
    except realdaemons.Unavailable as exc:
        log("cannot benchmark: %s" % exc)
        return 3
    import pyxs

    quick = args.quick
    n_seq = args.n or (300 if quick else 5000)
    rounds = args.rounds or (2 if quick else 7)
    nodes = args.nodes or (1000 if quick else 10000)
    n_events = args.events or (1000 if quick else 10000)
    timeout = 60.0

    env_lines = environment(args, realdaemons, pyxs, version, n_seq, rounds, nodes,
                            n_events)
    for line in env_lines:
        print(line)
    sys.stdout.flush()

    old = None
    old_note = None
    python = None
    if not args.no_old:
        try:
            python = old_pyxs_python(realdaemons, log)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            old_note = "pyxs %s unavailable: %s" % (OLD_PYXS, exc)
            log(old_note)

    # Before any helper starts: they inherit this process's CPU.
    placements = placements_for(log)
    names = [p.name if p is not None else "unpinned" for p in placements]
    results = Results()
    others = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="pyxs-bench-") as workdir:
        daemon = realdaemons.start(args.daemon, workdir)
        try:
            h = realdaemons.open_lowlevel_xs(daemon)
            client = pyxs.Client(unix_socket_path=daemon.socket_path)
            client.connect()
            if python is not None:
                try:
                    old = OldPyxs(python, daemon.socket_path)
                except (RuntimeError, OSError, ValueError) as exc:
                    old_note = "pyxs %s worker failed: %s" % (OLD_PYXS, exc)
                    log(old_note)
            bench = Bench(results, realdaemons, daemon, client, h, old, placements, log)
            try:
                bench.sequential(n_seq, rounds)
                bench.tree(nodes, rounds)
                # Watch rounds are short, and the noisiest (three busy
                # processes on the machine): twice as many of them.
                bench.watch(n_events, 2 * rounds, timeout)
                bench.watch(n_events, rounds, timeout, burst=True)
            finally:
                if old is not None:
                    old.close()
                client.close()
                h.close()
        finally:
            daemon.stop()
    busy = others.stop()

    rows = table_rows(results, names, nodes, n_events)
    load_end = "load average at the end: %s" % loadavg()
    if busy is not None:
        load_end += ("; other processes kept %.2f of the %d CPUs busy during the run"
                     % (busy, os.cpu_count()))
    notes = [load_end] + watch_notes(results, names) + ([old_note] if old_note else [])
    text = render(rows, names)
    print()
    print(text)
    print()
    goals = goal_lines(results, names)
    for line in notes + goals:
        print(line)
    if args.output:
        with open(args.output, "w") as f:
            f.write(render_rst(env_lines, text, notes, goals))
        log("table written to %s" % args.output)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env_lines, "notes": notes + goals,
                       "samples": [{"key": list(key), "rounds": values}
                                   for key, values in results.samples.items()]},
                      f, indent=1)
        log("per-round samples written to %s" % args.json)
    return 0


class OtherLoad:
    """How busy the machine was with work other than this benchmark:
    all CPU time spent (from /proc/stat), less this process's and its
    reaped children's (the daemon, the helpers and the C clients are all
    children, reaped by the time :meth:`stop` is called), per second."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        import resource

        try:
            with open("/proc/stat") as f:
                fields = f.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: all but idle, iowait
        ticks = [int(x) for x in fields[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        return busy, ours, time.monotonic()

    def stop(self):
        """Average number of CPUs kept busy by other processes, or None."""
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy = end[0] - self.start[0]
        ours = end[1] - self.start[1]
        return max(busy - ours, 0.0) / (end[2] - self.start[2])


def loadavg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "unknown"


def environment(args, realdaemons, pyxs, version, n_seq, rounds, nodes, n_events):
    import platform

    try:
        commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return [
        "pyxs benchmarks (%s)" % ("--quick" if args.quick else "full run"),
        "  CPUs: %s (usable by this process: %s)" % (os.cpu_count(), usable),
        "  Python: %s %s on %s" % (platform.python_implementation(),
                                   platform.python_version(), platform.platform()),
        "  Xen packages: %s (daemon: %s)" % (version, args.daemon),
        "  pyxs: %s from %s%s" % (pyxs.__version__, os.path.dirname(pyxs.__file__),
                                  " (git %s)" % commit if commit else ""),
        "  load average at the start: %s" % loadavg(),
        "  rounds: %d of %d sequential ops; %d of a %d-node tree; %d of %d watch "
        "events; each round in both placements" % (rounds, n_seq, rounds, nodes,
                                                   2 * rounds, n_events),
        "  placements: clients on one CPU; the daemon on the same CPU (1 CPU) "
        "or another (2 CPUs)",
        "  values: the best round; pyxs advantage: the median of the rounds' "
        "ratios (> 1: pyxs better), and their range",
    ]


# ----------------------------------------------------------- the benchmarks

class Bench:
    """The measurements.  Every round runs each placement in turn, and in
    each placement every implementation, in an order that rotates from
    round to round; results are keyed (..., implementation, placement)."""

    def __init__(self, results, realdaemons, daemon, client, h, old, placements, log):
        self.results, self.realdaemons, self.daemon = results, realdaemons, daemon
        self.client, self.h, self.old = client, h, old
        self.placements, self.log = placements, log
        self.impls = [PYXS, LOW] + ([OLD] if old else [])

    def _rounds(self, what, rounds, warm_up=False):
        """Yield (round, placement name) after placing the daemon."""
        for r in range(0 if warm_up else 1, rounds + 1):
            self.log("%s round %d/%d%s" % (what, r, rounds, " (warm-up)" if r == 0 else ""))
            for placement in rotate(self.placements, r):
                if placement is None:
                    yield r, "unpinned"
                else:
                    placement.apply(self.daemon)
                    yield r, placement.name

    def sequential(self, n, rounds):
        client, h, old, results = self.client, self.h, self.old, self.results
        path, value, dpath = "/bench/seq/key", "value-0123456789", "/bench/seq/dir"
        wpath = "/bench/seq/written"
        h.write("", path, value)
        for i in range(8):
            h.write("", "%s/child%d" % (dpath, i), "v")
        calls = {
            PYXS: {"read": (client.read, (path,)),
                   "write": (client.write, (wpath, value)),
                   "ls": (client.ls, (dpath,))},
            LOW: {"read": (h.read, ("", path)),
                  "write": (h.write, ("", wpath, value)),
                  "ls": (h.ls, ("", dpath))},
        }
        # Round 0 is a warm-up (caches, lazy imports), not counted.
        for r, where in self._rounds("sequential", rounds, warm_up=True):
            count = max(1, n // 10) if r == 0 else n
            for op in ("read", "write", "ls"):
                for impl in rotate(self.impls, r):
                    if impl == OLD:
                        target = {"read": path, "write": wpath, "ls": dpath}[op]
                        res = old.call(cmd="seq", op=op, n=count, path=target, value=value)
                        wall, cpu = res["wall"], res["cpu"]
                    else:
                        f, fargs = calls[impl][op]
                        wall, cpu = _loop(f, fargs, count)
                    if r == 0:
                        continue
                    results.add(("seq", op, impl, where), n / wall)
                    results.add(("seqcpu", op, impl, where), cpu / n * 1e6)

    def tree(self, nodes, rounds):
        client, h, old, results = self.client, self.h, self.old, self.results
        top = "/bench/tree"
        self.log("writing a tree of %d nodes" % nodes)
        paths = build_tree(h, top, nodes)
        h.write("", "/bench/leaf", "x")
        env = self.daemon.client_env()
        xls = self.realdaemons.c_client("xenstore-ls")

        def xenstore_ls():
            wall, cpu, out = timed_process(xls + ["-f", top], env)
            lines = out.count(b"\n")
            if lines != nodes - 1:  # it prints every node below top, not top
                raise RuntimeError("xenstore-ls printed %d lines, not %d"
                                   % (lines, nodes - 1))
            return wall, cpu, nodes

        def xenstore_ls_start():
            wall, cpu, _ = timed_process(xls + ["-f", "/bench/leaf"], env)
            return wall, cpu, nodes

        def pyxs_walk():
            return sum(1 for _ in client.walk(top))

        def pyxs_read_many():
            values = client.read_many(paths)
            return sum(1 for v in values if v is not None)

        def lowlevel_reads():
            read = h.read
            return sum(1 for p in paths if read("", p) is not None)

        steps = [
            ("walk", PYXS, lambda: timed(pyxs_walk)),
            ("walk", LOW, lambda: timed(walk_lowlevel, h, top)),
            ("walk", "pyxs sequential", lambda: timed(walk_pyxs_sequential, client, top)),
            ("walk", "xenstore-ls", xenstore_ls),
            ("walk", "xenstore-ls start", xenstore_ls_start),
            ("values", PYXS, lambda: timed(pyxs_read_many)),
            ("values", LOW, lambda: timed(lowlevel_reads)),
        ]
        if old:
            def old_walk():
                res = old.call(cmd="walk", top=top)
                return res["wall"], res["cpu"], res["count"]
            steps.append(("walk", OLD, old_walk))
        for r, where in self._rounds("tree", rounds):
            for kind, impl, step in rotate(steps, r):
                wall, cpu, count = step()
                if count != nodes:
                    raise RuntimeError("%s %s saw %d nodes, not %d"
                                       % (kind, impl, count, nodes))
                results.add(("tree", kind, impl, where), wall * 1e3)
                results.add(("treecpu", kind, impl, where), cpu * 1e3)
            # xenstore-ls less a process start, in this round.
            full = results.samples[("tree", "walk", "xenstore-ls", where)][-1]
            start = results.samples[("tree", "walk", "xenstore-ls start", where)][-1]
            results.add(("tree", "walk", "xenstore-ls net", where), max(full - start, 1e-6))

    def watch(self, n, rounds, timeout, burst=False):
        """Watch events received while another process writes; with
        *burst*, the receiver takes none until the writer has finished
        (keys "burst..." instead of "watch...")."""
        daemon, results = self.daemon, self.results
        kind = "burst" if burst else "watch"
        for r, where in self._rounds(kind, rounds):
            for impl in rotate(self.impls, r):
                # The same nodes every time: each round has a new watch (on
                # a new connection) and drains all its events.
                wpath = "/bench/" + kind
                if impl == OLD:
                    res = self.old.call(cmd=kind, wpath=wpath, n=n, timeout=timeout)
                else:
                    receiver = (PyxsReceiver(self.client) if impl == PYXS
                                else LowlevelReceiver(self.realdaemons, daemon))
                    res = timed_watch(daemon.socket_path, wpath, n, receiver, timeout, burst)
                results.add((kind, impl, where), n / res["wall"])
                results.add((kind + "cpu", impl, where), res["cpu"] / n * 1e6)
                results.add((kind + "writer", impl, where), res["writer"] * 1e3)
                results.add((kind + "wall", impl, where), res["wall"] * 1e3)
                if burst:
                    results.add(("burstworst", impl, where), res["worst"] * 1e3)


# ---------------------------------------------------------------- the table

def table_rows(results, placements, nodes, n_events):
    """One row per comparison: (benchmark, unit, other label, and for each
    placement (pyxs's best, other's best, (median, lowest, highest) of
    the per-round advantages)).  An advantage is > 1 when pyxs does
    better: pyxs/other for rates, other/pyxs for times and CPU."""
    rows = []

    def row(label, unit, key, other_label, other_key, higher_better):
        cells = []
        for where in placements:
            mine, theirs = key + (where,), other_key + (where,)
            cells.append((results.best(mine, higher_better),
                          results.best(theirs, higher_better),
                          results.advantage(mine, theirs, higher_better)))
        rows.append((label, unit, other_label, cells))

    for op in ("read", "write", "ls"):
        for other in (LOW, OLD):
            row("%s, sequential" % op, "ops/s", ("seq", op, PYXS), other,
                ("seq", op, other), True)
    for op in ("read", "write", "ls"):
        for other in (LOW, OLD):
            row("%s, client CPU" % op, "us/op", ("seqcpu", op, PYXS), other,
                ("seqcpu", op, other), False)
    walk = "walk %d nodes, Client.walk" % nodes
    for other, label in (("xenstore-ls", "xenstore-ls -f (process)"),
                         ("xenstore-ls net", "xenstore-ls -f less its start"),
                         (LOW, "xen.lowlevel.xs ls+read"),
                         (OLD, "pyxs %s Client.walk" % OLD_PYXS),
                         ("pyxs sequential", "pyxs ls+read")):
        row(walk, "ms", ("tree", "walk", PYXS), label, ("tree", "walk", other), False)
    for other, label in (("xenstore-ls", "xenstore-ls -f (process)"),
                         (LOW, "xen.lowlevel.xs ls+read")):
        row("walk %d nodes, client CPU" % nodes, "ms", ("treecpu", "walk", PYXS), label,
            ("treecpu", "walk", other), False)
    many = "%d values, Client.read_many" % nodes
    row(many, "ms", ("tree", "values", PYXS), "xen.lowlevel.xs read loop",
        ("tree", "values", LOW), False)
    row(many, "ms", ("tree", "values", PYXS), "xenstore-ls -f less its start",
        ("tree", "walk", "xenstore-ls net"), False)
    for other in (LOW, OLD):
        row("watch, %d events" % n_events, "events/s", ("watch", PYXS),
            other, ("watch", other), True)
    for other in (LOW, OLD):
        row("watch, client CPU", "us/event", ("watchcpu", PYXS), other,
            ("watchcpu", other), False)
    for other in (LOW, OLD):
        row("burst, watcher busy: slowest write", "ms", ("burstworst", PYXS), other,
            ("burstworst", other), False)
    for other in (LOW, OLD):
        row("burst, watcher busy: events", "events/s", ("burst", PYXS), other,
            ("burst", other), True)
    return rows


def _fmt(value):
    if value is None:
        return "n/a"
    if value >= 1000:
        return "{:,.0f}".format(value)
    if value >= 100:
        return "%.0f" % value
    if value >= 10:
        return "%.1f" % value
    return "%.2f" % value


def _fmt_advantage(adv):
    if adv is None:
        return "n/a"
    return "%.2fx (%.2f-%.2f)" % adv


def headings(placements):
    out = ["Benchmark", "Unit", "Compared with"]
    for where in placements:
        out += ["pyxs, %s" % where, "it, %s" % where, "pyxs advantage, %s" % where]
    return out


def render(rows, placements):
    """The table, as a reStructuredText "simple table" (which also reads
    well as plain text)."""
    cells = [headings(placements)]
    for label, unit, other, per_place in rows:
        line = [label, unit, other]
        for mine, theirs, adv in per_place:
            line += [_fmt(mine), _fmt(theirs), _fmt_advantage(adv)]
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    rule = "  ".join("=" * w for w in widths)

    def line(r):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([rule, line(cells[0]), rule] + [line(r) for r in cells[1:]] + [rule])


def watch_notes(results, placements):
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


def goal_lines(results, placements):
    """The issue's three goals, judged on the median per-round ratio."""
    def verdict(key, other_key, higher_better, need):
        parts = []
        for where in placements:
            adv = results.advantage(key + (where,), other_key + (where,), higher_better)
            if adv is None:
                parts.append("%s: not measured" % where)
            else:
                # Judged as shown, to 2 decimals: the rounds' range is
                # always far wider than the rounding.
                parts.append("%s: %.2fx (rounds %.2f-%.2f), %s" % (
                    where, adv[0], adv[1], adv[2],
                    "holds" if round(adv[0], 2) >= need else "MISSED"))
        return "; ".join(parts)

    return [
        "goal 1, sequential reads/s pyxs / xen.lowlevel.xs >= 1.0: "
        + verdict(("seq", "read", PYXS), ("seq", "read", LOW), True, 1.0),
        "goal 2, Client.walk >= 2x faster than xenstore-ls -f: "
        + verdict(("tree", "walk", PYXS), ("tree", "walk", "xenstore-ls"), False, 2.0),
        "goal 2, the same against xenstore-ls -f less its process start: "
        + verdict(("tree", "walk", PYXS), ("tree", "walk", "xenstore-ls net"), False, 2.0),
        "goal 3, watch events/s pyxs / xen.lowlevel.xs >= 1.0: "
        + verdict(("watch", PYXS), ("watch", LOW), True, 1.0),
    ]


def render_rst(env_lines, table, notes, goals):
    out = [".. Written by: python3 benchmarks/run.py --output FILE", "", "::", ""]
    out += ["    " + line for line in env_lines] + [""]
    out += [table, ""]
    out += ["- " + line for line in notes + goals]
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_worker041"]:
        return worker041_main(argv[1])
    if argv[:1] == ["--_writer"]:
        return writer_main(argv[1], argv[2], int(argv[3]))
    if argv[:1] == ["--_burst_writer"]:
        return burst_writer_main(argv[1], argv[2], int(argv[3]))

    parser = argparse.ArgumentParser(
        description="Benchmark pyxs against xen.lowlevel.xs, pyxs %s and "
                    "xenstore-ls on a real XenStore daemon." % OLD_PYXS)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (small counts, 2 rounds)")
    parser.add_argument("--daemon", choices=("xenstored", "oxenstored"),
                        default="xenstored", help="which daemon (default: xenstored)")
    parser.add_argument("--output", metavar="FILE",
                        help="also write the table as reStructuredText to FILE")
    parser.add_argument("--json", metavar="FILE",
                        help="also write every round's measurements to FILE")
    parser.add_argument("--rounds", type=int, help="rounds (default 7; --quick 2); "
                        "the watch benchmark runs twice as many")
    parser.add_argument("-n", type=int, help="ops per sequential round (default 5000)")
    parser.add_argument("--nodes", type=int, help="tree size (default 10000)")
    parser.add_argument("--events", type=int, help="watch events per round (default 10000)")
    parser.add_argument("--no-old", action="store_true",
                        help="skip pyxs %s (no virtual environment, no PyPI)" % OLD_PYXS)
    args = parser.parse_args(argv)
    if args.nodes is not None and args.nodes < 3:
        parser.error("--nodes must be at least 3")

    def log(message):
        print("# " + message, file=sys.stderr, flush=True)

    return run(args, log)


if __name__ == "__main__":
    sys.exit(main())
