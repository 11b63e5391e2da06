#!/usr/bin/env python3
"""Benchmark pyxs against Xen's own clients on a real XenStore daemon.

From a checkout, with nothing installed::

    python3 benchmarks/run.py                 # full run, a few minutes
    python3 benchmarks/run.py --quick         # smoke run, well under a minute
    python3 benchmarks/run.py --daemon oxenstored --output table.rst

The script starts Xen 4.17's C ``xenstored`` (or ``oxenstored``) exactly
as the test fixtures do (``tests/support/daemons.py``) and measures, in one
run and interleaving the implementations round by round so that load on
the machine hits all of them alike:

* sequential round trips per second, and the client's own CPU time per
  operation, for read, write and directory listing: pyxs against Xen's C
  extension ``xen.lowlevel.xs`` and against pyxs 0.4.1 from PyPI (which
  the script installs into a throw-away virtual environment in the cache
  directory and drives in a subprocess) (``sequential.py``);
* reading a whole tree (values and children) with ``Client.walk`` and
  ``Client.read_many``, against ``xenstore-ls -f`` and a recursive loop
  over ``xen.lowlevel.xs``, with the daemon's own CPU time for the same
  requests (``tree.py``);
* creating a guest's subtree in one transaction (``bulk.py``);
* watch events received per second while another process writes, and
  the same with the watcher busy elsewhere (taking no event) until the
  writer, writing one node at a time, is done: the writer's slowest
  write (a daemon holding unread events may stall it) and the events
  received per second over the whole burst (``watch.py``).

It prints the environment and ONE table, with notes that include what
disturbed the run (``disturbances.py``); ``--output FILE`` also writes
them as reStructuredText (``report.py``).  Needs CPython 3.11 (for Xen's
C extension), root for ``oxenstored``, and apt access the first time
(see tests/support/xen.py).  ``docs/performance.rst`` explains the rows.

The other files: ``base.py``, what every benchmark stands on;
``old_pyxs.py``, pyxs 0.4.1's virtual environment and worker;
``processes/``, the helper programs (standard library only).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def log(message):
    print("# " + message, file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Benchmark pyxs against xen.lowlevel.xs, pyxs %s and "
                    "xenstore-ls on a real XenStore daemon." % old_pyxs.VERSION)
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
    parser.add_argument("--nodes", type=int, help="tree size, and the nodes created in "
                        "one transaction (default 10000)")
    parser.add_argument("--events", type=int, help="watch events per round (default 10000)")
    parser.add_argument("--no-old", action="store_true",
                        help="skip pyxs %s (no virtual environment, no PyPI)" % old_pyxs.VERSION)
    args = parser.parse_args(argv)
    if args.nodes is not None and args.nodes < 3:
        parser.error("--nodes must be at least 3")
    return args


def environment(args, version, n_seq, rounds, nodes, n_events):
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
        "  load average at the start: %s" % disturbances.loadavg(),
        "  rounds: %d of %d sequential ops; %d of a %d-node tree and of creating %d nodes; "
        "%d of %d watch events; each round in both placements"
        % (rounds, n_seq, rounds, nodes, nodes, 2 * rounds, n_events),
        "  placements: clients on one CPU; the daemon on the same CPU (1 CPU) "
        "or another (2 CPUs)",
        "  values: the best round; pyxs advantage: the median of the rounds' "
        "ratios (> 1: pyxs better), and their range",
    ]


def start_old_pyxs(python, daemon):
    """The pyxs 0.4.1 worker, or (None, why not)."""
    if python is None:
        return None, None
    try:
        return old_pyxs.OldPyxs(python, daemon.socket_path), None
    except (RuntimeError, OSError, ValueError) as exc:
        return None, "pyxs %s worker failed: %s" % (old_pyxs.VERSION, exc)


def run(args):
    try:
        support.load_lowlevel_xs()  # only to know it loads
        version = support.xen_version()
        support.c_client("xenstore-ls")
    except support.Unavailable as exc:
        log("cannot benchmark: %s" % exc)
        return 3

    quick = args.quick
    n_seq = args.n or (300 if quick else 5000)
    rounds = args.rounds or (2 if quick else 7)
    nodes = args.nodes or (1000 if quick else 10000)
    n_events = args.events or (1000 if quick else 10000)
    timeout = 60.0

    env_lines = environment(args, version, n_seq, rounds, nodes, n_events)
    for line in env_lines:
        print(line)
    sys.stdout.flush()

    old_notes = []
    python = None
    if not args.no_old:
        try:
            python = old_pyxs.venv_python(log)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            old_notes.append("pyxs %s unavailable: %s" % (old_pyxs.VERSION, exc))
            log(old_notes[-1])

    # Before any helper starts: they inherit this process's CPU.
    placements = base.placements_for(log)
    names = [p.name if p is not None else "unpinned" for p in placements]
    results = base.Results()
    with tempfile.TemporaryDirectory(prefix="pyxs-bench-") as workdir:
        daemon = support.start(args.daemon, workdir)
        try:
            h = support.open_lowlevel_xs(daemon)
            client = pyxs.Client(unix_socket_path=daemon.socket_path)
            client.connect()
            old, why = start_old_pyxs(python, daemon)
            if why:
                old_notes.append(why)
                log(why)
            ctx = base.Context(daemon, client, h, old, placements, results, log)
            disturbed = disturbances.Disturbances(
                lambda: [daemon.pid] + ([old.pid] if old else []))
            try:
                with disturbed.section("sequential"):
                    sequential.run(ctx, n_seq, rounds)
                with disturbed.section("tree"):
                    tree.run(ctx, nodes, rounds)
                with disturbed.section("bulk write"):
                    bulk.run(ctx, nodes, rounds)
                # Watch rounds are short, and the noisiest (three busy
                # processes on the machine): twice as many of them.
                with disturbed.section("watch"):
                    watch.run(ctx, n_events, 2 * rounds, timeout)
                with disturbed.section("burst"):
                    watch.run(ctx, n_events, rounds, timeout, burst=True)
            finally:
                if old is not None:
                    old.close()
                client.close()
                h.close()
        finally:
            daemon.stop()

    rows = report.table_rows(results, names, nodes, n_events)
    notes = (disturbed.verdict() + ["load average at the end: %s" % disturbances.loadavg()]
             + disturbed.lines() + sequential.notes(results, names)
             + tree.notes(results, names) + watch.notes(results, names)
             + old_notes)
    text = report.render(rows, names)
    print()
    print(text)
    print()
    goals = report.goal_lines(results, names)
    for line in notes + goals:
        print(line)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report.render_rst(env_lines, text, notes, goals))
        log("table written to %s" % args.output)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env_lines, "notes": notes + goals,
                       "samples": [{"key": list(key), "rounds": values}
                                   for key, values in results.samples.items()]},
                      f, indent=1)
        log("per-round samples written to %s" % args.json)
    return 0


if __name__ == "__main__":
    # The checkout's pyxs and the test suite's Xen harness (tests.support),
    # after this directory's modules (sys.path[0] already).
    sys.path.insert(1, REPO)
    import base
    import bulk
    import disturbances
    import old_pyxs
    import pyxs
    import report
    import sequential
    import tree
    import watch
    from tests import support

    sys.exit(run(parse_args(sys.argv[1:])))
