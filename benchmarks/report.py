"""The report: one table comparing pyxs with each other client, the notes
and the goals, as plain text and as reStructuredText."""

from base import LOW, OLD, PYXS
from tree import wall_per_daemon_cpu


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
    row("read, a busy process on the CPU", "ops/s", ("seqbusy", PYXS), LOW,
        ("seqbusy", LOW), True)
    walk = "walk %d nodes, Client.walk" % nodes
    for other, label in (("xenstore-ls", "xenstore-ls -f (process)"),
                         ("xenstore-ls net", "xenstore-ls -f less its start"),
                         (LOW, "xen.lowlevel.xs ls+read"),
                         (OLD, OLD + " Client.walk"),
                         ("pyxs sequential", "pyxs ls+read")):
        row(walk, "ms", ("tree", "walk", PYXS), label, ("tree", "walk", other), False)
    for other, label in (("xenstore-ls", "xenstore-ls -f (process)"),
                         (LOW, "xen.lowlevel.xs ls+read")):
        row("walk %d nodes, client CPU" % nodes, "ms", ("treecpu", "walk", PYXS), label,
            ("treecpu", "walk", other), False)
    for other, label in (("xenstore-ls", "xenstore-ls -f (process)"),
                         (LOW, "xen.lowlevel.xs ls+read")):
        row("walk %d nodes, daemon CPU" % nodes, "ms", ("treedaemon", "walk", PYXS), label,
            ("treedaemon", "walk", other), False)
    many = "%d values, Client.read_many" % nodes
    row(many, "ms", ("tree", "values", PYXS), "xen.lowlevel.xs read loop",
        ("tree", "values", LOW), False)
    row(many, "ms", ("tree", "values", PYXS), "xenstore-ls -f less its start",
        ("tree", "walk", "xenstore-ls net"), False)
    row("%d values, daemon CPU" % nodes, "ms", ("treedaemon", "values", PYXS),
        "xen.lowlevel.xs read loop", ("treedaemon", "values", LOW), False)
    bulk = "create %d nodes in a transaction" % nodes
    row(bulk, "ms", ("bulk", PYXS), "xen.lowlevel.xs write loop", ("bulk", LOW), False)
    row("create %d nodes, client CPU" % nodes, "ms", ("bulkcpu", PYXS),
        "xen.lowlevel.xs write loop", ("bulkcpu", LOW), False)
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


def _verdict(where, adv, need, at_most=False):
    """A goal's verdict in one placement, judged as shown, to 2 decimals:
    the rounds' range is always far wider than the rounding."""
    if adv is None:
        return "%s: not measured" % where
    met = round(adv[0], 2) <= need if at_most else round(adv[0], 2) >= need
    return "%s: %.2fx (rounds %.2f-%.2f), %s" % (where, adv[0], adv[1], adv[2],
                                                  "holds" if met else "MISSED")


def goal_lines(results, placements):
    """The issues' goals, judged on the median per-round ratio."""
    def verdict(key, other_key, higher_better, need):
        return "; ".join(
            _verdict(where, results.advantage(key + (where,), other_key + (where,),
                                              higher_better), need)
            for where in placements)

    def paced(kind):
        return "; ".join(
            _verdict(where, wall_per_daemon_cpu(results, kind, PYXS, where), 1.5, at_most=True)
            for where in placements if where != "1 CPU")

    return [
        "goal 1, sequential reads/s pyxs / xen.lowlevel.xs >= 1.0: "
        + verdict(("seq", "read", PYXS), ("seq", "read", LOW), True, 1.0),
        "goal 2, Client.walk >= 2x faster than xenstore-ls -f: "
        + verdict(("tree", "walk", PYXS), ("tree", "walk", "xenstore-ls"), False, 2.0),
        "goal 2, the same against xenstore-ls -f less its process start: "
        + verdict(("tree", "walk", PYXS), ("tree", "walk", "xenstore-ls net"), False, 2.0),
        "goal 2, Client.walk wall time <= 1.5x the daemon's CPU time: " + paced("walk"),
        "goal 2, Client.read_many wall time <= 1.5x the daemon's CPU time: "
        + paced("values"),
        "goal 3, watch events/s pyxs / xen.lowlevel.xs >= 1.0: "
        + verdict(("watch", PYXS), ("watch", LOW), True, 1.0),
    ]


def render_rst(env_lines, table, notes, goals):
    out = [".. Written by: python3 benchmarks/run.py --output FILE", "", "::", ""]
    out += ["    " + line for line in env_lines] + [""]
    out += [table, ""]
    out += ["- " + line for line in notes + goals]
    return "\n".join(out) + "\n"
