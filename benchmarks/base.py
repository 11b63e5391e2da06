"""What every benchmark stands on: the labels of the implementations, the
per-round results, the daemon's placement, timing helpers, and
:class:`Context`, the one object a benchmark is given."""

import os
import resource
import subprocess

from tests import support
from old_pyxs import VERSION as OLD_VERSION
from processes.harness import perf_counter, process_time

# Labels of the implementations, as they appear in the table.
PYXS = "pyxs"
LOW = "xen.lowlevel.xs"
OLD = "pyxs %s" % OLD_VERSION

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def rotate(items, r):
    k = r % len(items)
    return items[k:] + items[:k]


def process_cpu(pid):
    """CPU time (user and system, all threads) of the live process *pid*,
    in seconds; None once it is gone.

    From the scheduler's nanosecond count of each thread
    (``/proc/<pid>/task/*/schedstat``) where the kernel has it, else from
    utime and stime in ``/proc/<pid>/stat``, which count in clock ticks
    (1/``SC_CLK_TCK`` s, often 10 ms: too coarse for a small tree).
    """
    try:
        total = 0
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # The fields after the command name, which may hold spaces: utime and
    # stime are the 14th and 15th of the line.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def timed(fn, *args):
    """Run fn(*args): (wall, cpu, result)."""
    c0, t0 = process_time(), perf_counter()
    result = fn(*args)
    return perf_counter() - t0, process_time() - c0, result


def timed_process(argv, env, timeout=120):
    """Run a process, capturing stdout: (wall, its user+sys CPU, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    wall = perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s" % (argv, proc.stderr.decode(errors="replace")))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


class Context:
    """What a benchmark works with: the daemon and the clients connected to
    it (*client* pyxs, *h* a xen.lowlevel.xs handle, *old* the pyxs 0.4.1
    worker or None), the placements, where results go, and a log."""

    def __init__(self, daemon, client, h, old, placements, results, log):
        self.daemon, self.client, self.h, self.old = daemon, client, h, old
        self.placements, self.results, self.log = placements, results, log
        self.impls = [PYXS, LOW] + ([OLD] if old else [])

    def rounds(self, what, rounds, warm_up=False):
        """Yield (round, placement name) after placing the daemon; round 0
        is a warm-up (caches, lazy imports), not to be counted."""
        for r in range(0 if warm_up else 1, rounds + 1):
            self.log("%s round %d/%d%s" % (what, r, rounds, " (warm-up)" if r == 0 else ""))
            for placement in rotate(self.placements, r):
                if placement is None:
                    yield r, "unpinned"
                else:
                    placement.apply(self.daemon)
                    yield r, placement.name

    def daemon_cpu(self):
        """The daemon's CPU time so far, in seconds."""
        return process_cpu(self.daemon.pid)

    def lowlevel_handle(self):
        """A new xen.lowlevel.xs handle on the daemon."""
        return support.open_lowlevel_xs(self.daemon)
