"""benchmarks/run.py --quick works: it prints its table with every row.

A smoke test, not a timing test: the numbers are never checked, since
they depend on the machine and its load.
"""

import os
import re
import subprocess
import sys

import pytest

from .support import daemons, xen, xen_clients
from .support.commands import REPO

pytestmark = pytest.mark.realdaemon

SCRIPT = REPO / "benchmarks" / "run.py"

#: (benchmark, compared with) of every row, in order.
ROWS = [(op, other)
        for op in ("read, sequential", "write, sequential", "ls, sequential",
                   "read, client CPU", "write, client CPU", "ls, client CPU")
        for other in ("xen.lowlevel.xs", "pyxs 0.4.1")]
ROWS += [("read, a busy process on the CPU", "xen.lowlevel.xs")]
ROWS += [("walk 1000 nodes, Client.walk", other)
         for other in ("xenstore-ls -f (process)", "xenstore-ls -f less its start",
                       "xen.lowlevel.xs ls+read", "pyxs 0.4.1 Client.walk",
                       "pyxs ls+read")]
ROWS += [("walk 1000 nodes, client CPU", other)
         for other in ("xenstore-ls -f (process)", "xen.lowlevel.xs ls+read")]
ROWS += [("walk 1000 nodes, daemon CPU", other)
         for other in ("xenstore-ls -f (process)", "xen.lowlevel.xs ls+read")]
ROWS += [("1000 values, Client.read_many", other)
         for other in ("xen.lowlevel.xs read loop", "xenstore-ls -f less its start")]
ROWS += [("1000 values, daemon CPU", "xen.lowlevel.xs read loop"),
         ("create 1000 nodes in a transaction", "xen.lowlevel.xs write loop"),
         ("create 1000 nodes, client CPU", "xen.lowlevel.xs write loop")]
ROWS += [(bench, other)
         for bench in ("watch, 1000 events", "watch, client CPU",
                       "burst, watcher busy: slowest write", "burst, watcher busy: events")
         for other in ("xen.lowlevel.xs", "pyxs 0.4.1")]


def placements():
    """The daemon placements the script measures on this machine."""
    return ["1 CPU", "2 CPUs"] if len(os.sched_getaffinity(0)) > 1 else ["1 CPU"]


def headings():
    out = ["Benchmark", "Unit", "Compared with"]
    for where in placements():
        out += ["pyxs, %s" % where, "it, %s" % where, "pyxs advantage, %s" % where]
    return out


def table_rows(text):
    """The rows of the first simple table in *text*, split on the column
    boundaries its ``=`` rule gives."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    assert len(rules) >= 3, "no table in:\n" + text
    spans, start = [], 0
    rule = lines[rules[0]]
    while start < len(rule):
        end = rule.find(" ", start)
        end = len(rule) if end < 0 else end
        spans.append((start, end))
        start = end + 2

    def cells(line):
        return [line[a:b].strip() for a, b in spans]

    assert cells(lines[rules[0] + 1]) == headings()
    return [cells(line) for line in lines[rules[1] + 1:rules[2]]]


ADVANTAGE = re.compile(r"^\d+\.\d\dx \(\d+\.\d\d-\d+\.\d\d\)$")


def test_quick_run_prints_the_whole_table(tmp_path):
    xen.require(daemons.start, "xenstored", tmp_path).stop()
    xen.require(xen_clients.load_lowlevel_xs)
    xen.require(xen_clients.c_client, "xenstore-ls")

    output = tmp_path / "table.rst"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the script finds the checkout by itself
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        # A few seconds, plus, the first time, making the pyxs 0.4.1 venv.
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    out = proc.stdout
    assert "CPUs: " in out
    assert "Python: CPython 3.11" in out
    assert "Xen packages: %s" % xen.xen_version() in out

    rows = table_rows(out)
    assert [(r[0], r[2]) for r in rows] == ROWS
    for row in rows:
        old = "0.4.1" in row[2]  # measured only when PyPI could be reached
        for mine, theirs, advantage in zip(row[3::3], row[4::3], row[5::3]):
            assert mine != "n/a", row  # pyxs itself is always measured
            assert old or (theirs != "n/a" and ADVANTAGE.match(advantage)), row
    for goal in ("goal 1,", "goal 2,", "goal 3,"):
        assert goal in out
    assert any(verdict in out for verdict in ("disturbed: ", "undisturbed: ", "not judged: "))

    rst = output.read_text()
    assert [(r[0], r[2]) for r in table_rows(rst)] == ROWS
