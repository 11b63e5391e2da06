"""What else was going on while the benchmarks ran.

Each benchmark runs inside :meth:`Disturbances.section`, which samples
the machine before and after it: CPU time spent by processes other than
this one and its helpers (``/proc/stat`` less our own), time stolen by
the hypervisor, the CPUs' clock frequency, and the threads of this
process (a xen.lowlevel.xs handle that has set a watch reads every reply
through a thread of its own, which makes each call dearer).  Whatever
passes a limit is reported as "disturbed: ...", beside the table.
"""

import contextlib
import os
import resource
import time

from base import process_cpu

#: Above these, a run is reported as disturbed.
OTHER_LOAD_LIMIT = 0.10  # CPUs kept busy by other processes, on average
STEAL_LIMIT = 0.01  # share of the CPUs' time the hypervisor took
FREQUENCY_SPREAD_LIMIT = 0.05  # between the lowest and highest reading
#: Shorter sections are not judged: /proc/stat counts in clock ticks.
SHORTEST_JUDGED = 1.0  # seconds


def loadavg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "unknown"


def cpu_frequencies():
    """Current clock of each CPU in MHz, from cpufreq when the kernel
    offers it, else from /proc/cpuinfo (which a virtual machine may fill
    with a fixed figure); [] when neither is readable."""
    found = []
    base = "/sys/devices/system/cpu"
    try:
        cpus = sorted(name for name in os.listdir(base)
                      if name.startswith("cpu") and name[3:].isdigit())
    except OSError:
        cpus = []
    for cpu in cpus:
        try:
            with open(os.path.join(base, cpu, "cpufreq", "scaling_cur_freq")) as f:
                found.append(int(f.read()) / 1000)
        except (OSError, ValueError):
            break
    else:
        if found:
            return found
    try:
        with open("/proc/cpuinfo") as f:
            return [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError, IndexError):
        return []


def thread_count():
    return len(os.listdir("/proc/self/task"))


class _Sample:
    """CPU time of the whole machine and of our own processes, now."""

    def __init__(self, helper_pids):
        with open("/proc/stat") as f:
            fields = f.readline().split()
        # user nice system idle iowait irq softirq steal
        ticks = [int(x) for x in fields[1:9]]
        self.busy = (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / os.sysconf("SC_CLK_TCK")
        self.steal = ticks[7] / os.sysconf("SC_CLK_TCK")
        # Our own: this process, its reaped children (writers, C clients),
        # and the helpers still running (the daemon, the pyxs 0.4.1 worker).
        self.ours = sum(process_cpu(pid) or 0.0 for pid in helper_pids)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            self.ours += usage.ru_utime + usage.ru_stime
        self.time = time.monotonic()


class Disturbances:
    """Samples of the machine around each benchmark, and the verdict.

    *helper_pids* is called at each sample for the pids of our live
    helper processes, whose CPU time is the benchmark's own.
    """

    def __init__(self, helper_pids):
        self.helper_pids = helper_pids
        self.cpus = os.cpu_count() or 1
        self.preload = os.environ.get("LD_PRELOAD")
        self.frequencies = cpu_frequencies()
        self.sections = []  # (name, other CPUs, steal share, threads)
        self._first = self._last = None  # the whole run's samples

    @contextlib.contextmanager
    def section(self, name):
        threads = thread_count()
        try:
            start = _Sample(self.helper_pids())
        except OSError:  # no /proc/stat: nothing to say
            yield
            return
        yield
        end = _Sample(self.helper_pids())
        self._first = self._first or start
        self._last = end
        self.sections.append((name,) + self._load(start, end) + (threads,))
        self.frequencies += cpu_frequencies()

    def _load(self, start, end):
        """(CPUs kept busy by other processes, share of the CPUs' time the
        hypervisor took) between two samples; (None, None) when they are
        too close to tell."""
        elapsed = end.time - start.time
        if elapsed < SHORTEST_JUDGED:
            return None, None
        other = max((end.busy - start.busy) - (end.ours - start.ours), 0.0) / elapsed
        return other, (end.steal - start.steal) / (elapsed * self.cpus)

    def _judged(self):
        """(name, other, steal, threads) of each section, then of the whole run."""
        whole = [("whole run",) + self._load(self._first, self._last) + (0,)] \
            if self._first else []
        return self.sections + whole

    def lines(self):
        """What was measured, one line per section."""
        out = []
        for name, other, steal, threads in self._judged():
            if other is None:
                load = "too short to measure other load"
            else:
                load = ("other processes kept %.2f of the %d CPUs busy, the hypervisor "
                        "took %.1f%% of them" % (other, self.cpus, 100 * steal))
            if threads:
                load += "; %d thread(s) in this process at its start" % threads
            out.append("%s: %s" % (name, load))
        if self.frequencies:
            out.append("CPU clock: %.0f-%.0f MHz over the run"
                       % (min(self.frequencies), max(self.frequencies)))
        else:
            out.append("CPU clock: not readable here")
        return out

    def verdict(self):
        """One "disturbed: ..." line for each limit passed, or one line
        saying the run was undisturbed, or too short to judge."""
        out = []
        judged = [other for _, other, _, _ in self._judged() if other is not None]
        for name, other, steal, threads in self._judged():
            if other is not None and other > OTHER_LOAD_LIMIT:
                out.append("disturbed: %s: other processes kept %.2f CPUs busy (limit %.2f)"
                           % (name, other, OTHER_LOAD_LIMIT))
            if steal is not None and steal > STEAL_LIMIT:
                out.append("disturbed: %s: the hypervisor took %.1f%% of the CPUs' time "
                           "(limit %.0f%%)" % (name, 100 * steal, 100 * STEAL_LIMIT))
            if name == "sequential" and threads > 1:
                out.append("disturbed: sequential: %d threads in this process (a "
                           "xen.lowlevel.xs handle with a watch reads its replies in a "
                           "thread, which makes every call dearer)" % threads)
        if self.frequencies:
            low, high = min(self.frequencies), max(self.frequencies)
            if high > low * (1 + FREQUENCY_SPREAD_LIMIT):
                out.append("disturbed: the CPU clock varied from %.0f to %.0f MHz"
                           % (low, high))
        if self.preload:
            out.append("disturbed: LD_PRELOAD=%s in this process" % self.preload)
        if out:
            return out
        if not judged:
            return ["not judged: the run was too short to measure other load"]
        return ["undisturbed: no limit of benchmarks/disturbances.py passed"]
