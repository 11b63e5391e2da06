"""benchmarks/run.py --quick works: it prints its table with every row.

A smoke test, not a timing test: the numbers are never checked, since
they depend on the machine and its load.
"""

import os
import subprocess
import sys
from pathlib import Path

import realdaemons

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "run.py"

#: (benchmark, compared with) of every row, in order.
ROWS = [(op, other)
        for op in ("read, sequential", "write, sequential", "ls (directory), sequential",
                   "read, client CPU", "write, client CPU", "ls (directory), client CPU")
        for other in ("xen.lowlevel.xs", "pyxs 0.4.1")]
ROWS += [("walk 1000 nodes, Client.walk", other)
         for other in ("xenstore-ls -f (process)", "xenstore-ls -f minus process start",
                       "xen.lowlevel.xs ls+read recursion", "pyxs 0.4.1 Client.walk",
                       "pyxs ls+read recursion")]
ROWS += [("walk 1000 nodes, client CPU", other)
         for other in ("xenstore-ls -f (process)", "xen.lowlevel.xs ls+read recursion")]
ROWS += [("1000 values, Client.read_many", other)
         for other in ("xen.lowlevel.xs read loop", "xenstore-ls -f minus process start")]
ROWS += [(bench, other)
         for bench in ("watch, 1000 events received", "watch, client CPU")
         for other in ("xen.lowlevel.xs", "pyxs 0.4.1")]

HEADINGS = ["Benchmark", "Unit", "pyxs", "Compared with", "Its value", "pyxs advantage",
            "Rounds' range"]


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
    assert len(spans) == len(HEADINGS), rule

    def cells(line):
        return [line[a:b + (len(line) if i == len(spans) - 1 else 0)].strip()
                for i, (a, b) in enumerate(spans)]

    assert cells(lines[rules[0] + 1]) == HEADINGS
    return [cells(line) for line in lines[rules[1] + 1:rules[2]]]


def test_quick_run_prints_the_whole_table(tmp_path):
    realdaemons.require(realdaemons.start, "xenstored", tmp_path).stop()
    realdaemons.require(realdaemons.load_lowlevel_xs)
    realdaemons.require(realdaemons.c_client, "xenstore-ls")

    output = tmp_path / "table.rst"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the script finds the checkout by itself
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    out = proc.stdout
    assert "CPUs: " in out
    assert "Python: CPython 3.11" in out
    assert "Xen packages: %s" % realdaemons.xen_version() in out

    rows = table_rows(out)
    assert [(r[0], r[3]) for r in rows] == ROWS
    for row in rows:
        pyxs_value, advantage = row[2], row[5]
        # pyxs itself is always measured; 0.4.1 only when PyPI could be reached.
        assert pyxs_value != "n/a", row
        if row[3] != "pyxs 0.4.1" and "0.4.1" not in row[3]:
            assert advantage.endswith("x"), row
            float(advantage[:-1])
    for goal in ("goal 1,", "goal 2,", "goal 3,"):
        assert goal in out

    rst = output.read_text()
    assert [(r[0], r[3]) for r in table_rows(rst)] == ROWS
