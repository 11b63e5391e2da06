"""Reading a whole tree: ``Client.walk`` and ``Client.read_many`` against
``xenstore-ls -f``, a recursive loop over xen.lowlevel.xs, pyxs 0.4.1's
walk and the same loop over pyxs.

Keys: ("tree", kind, implementation, placement) wall time in ms,
("treecpu", ...) the client's CPU time in ms, ("treedaemon", ...) the
daemon's CPU time for the same requests in ms; kind is "walk" or
"values".
"""

from tests import support
from base import LOW, OLD, PYXS, rotate, timed, timed_process


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


def run(ctx, nodes, rounds):
    client, h, old, results = ctx.client, ctx.h, ctx.old, ctx.results
    top = "/bench/tree"
    ctx.log("writing a tree of %d nodes" % nodes)
    paths = build_tree(h, top, nodes)
    h.write("", "/bench/leaf", "x")
    env = ctx.daemon.client_env()
    xls = support.c_client("xenstore-ls")

    def xenstore_ls():
        wall, cpu, out = timed_process(xls + ["-f", top], env)
        lines = out.count(b"\n")
        if lines != nodes - 1:  # it prints every node below top, not top
            raise RuntimeError("xenstore-ls printed %d lines, not %d" % (lines, nodes - 1))
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
    for r, where in ctx.rounds("tree", rounds):
        for kind, impl, step in rotate(steps, r):
            daemon_before = ctx.daemon_cpu()
            wall, cpu, count = step()
            daemon_cpu = ctx.daemon_cpu() - daemon_before
            if count != nodes:
                raise RuntimeError("%s %s saw %d nodes, not %d" % (kind, impl, count, nodes))
            results.add(("tree", kind, impl, where), wall * 1e3)
            results.add(("treecpu", kind, impl, where), cpu * 1e3)
            results.add(("treedaemon", kind, impl, where), daemon_cpu * 1e3)
        # xenstore-ls less a process start, in this round.
        full = results.samples[("tree", "walk", "xenstore-ls", where)][-1]
        start = results.samples[("tree", "walk", "xenstore-ls start", where)][-1]
        results.add(("tree", "walk", "xenstore-ls net", where), max(full - start, 1e-6))


#: (kind, implementation, label) of the wall / daemon CPU notes.
PACED = [("walk", PYXS, "Client.walk"), ("values", PYXS, "Client.read_many"),
         ("walk", "xenstore-ls", "xenstore-ls -f"), ("walk", LOW, "xen.lowlevel.xs ls+read"),
         ("values", LOW, "xen.lowlevel.xs read loop")]


def wall_per_daemon_cpu(results, kind, impl, where):
    """(median, lowest, highest) over the rounds of wall time / the
    daemon's CPU time, or None (the daemon's CPU time is counted in clock
    ticks: a tree too small to cost it one tick gives no ratio)."""
    return results.advantage(("tree", kind, impl, where), ("treedaemon", kind, impl, where),
                             True)


def notes(results, placements):
    """How close each reader came to the daemon's own pace."""
    out = []
    for where in placements:
        parts = []
        for kind, impl, label in PACED:
            ratio = wall_per_daemon_cpu(results, kind, impl, where)
            daemon = results.best(("treedaemon", kind, impl, where), False)
            if ratio is not None:
                parts.append("%s %.2fx (daemon %.1f ms)" % (label, ratio[0], daemon))
        if parts:
            out.append("tree, %s, wall time / the daemon's CPU time for the same requests "
                       "(median of the rounds): %s" % (where, "; ".join(parts)))
    return out
