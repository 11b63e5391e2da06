#!/usr/bin/env python3
"""pyxs quick start: what a XenStore client does, in one short run.

    python3 examples/quickstart.py

It writes, reads and lists a few nodes, watches one of them, and changes
them in transactions, printing each step.  It talks to this machine's
xenstored when there is one (the socket named by XENSTORED_PATH, or
xenstored's usual socket).  Anywhere else, it starts pyxs's own in-process
XenStore server, pyxs.testing, so it needs no Xen host.  Everything it
writes lives under /pyxs-quickstart and is removed at the end.
"""

import contextlib
import os
import sys

try:
    import pyxs
except ImportError:  # Run from a source checkout without installing.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import pyxs

from pyxs import Client
from pyxs.connection import default_socket_path

ROOT = "/pyxs-quickstart"


@contextlib.contextmanager
def xenstore():
    """Yield the socket of a XenStore to use: the real one if it answers,
    else an in-process server that lasts as long as the ``with`` block."""
    path = default_socket_path()
    try:
        with Client(unix_socket_path=path, socket_timeout=5) as c:
            c.connect()
    except pyxs.ConnectionError as e:
        print("No xenstored to talk to (%s)." % e)
    else:
        print("Using the xenstored at %s" % path)
        yield path
        return

    from pyxs.testing import XenStoreServer

    with XenStoreServer() as server:
        print("Started pyxs's in-process XenStore (pyxs.testing) at %s"
              % server.socket_path)
        yield server.socket_path


def main():
    with xenstore() as socket_path:
        with Client(unix_socket_path=socket_path, socket_timeout=10) as c:
            run(c)
    print("Done.")


def run(c):
    vm = ROOT + "/vm"
    c.rm(ROOT)  # Leftovers of an interrupted run, if any.

    # Write and read: values are text; other objects are written as str().
    c[vm + "/name"] = "demo"
    c.write(vm + "/memory", 512)
    print("write  %s = %r" % (vm + "/name", "demo"))
    print("write  %s = %r" % (vm + "/memory", 512))
    print("read   %s -> %r" % (vm + "/name", c[vm + "/name"]))
    print("read   %s -> %r" % (vm + "/memory", c.read(vm + "/memory")))

    # List the children of a node (in the daemon's order, so sort them).
    print("ls     %s -> %s" % (vm, sorted(c.ls(vm))))

    # Watch a node: a monitor has its own connection and waits without
    # polling.  XenStore first sends one event for the watch itself.
    with c.monitor() as m:
        m.watch(vm + "/state", "state-changed")
        m.wait(timeout=5)
        c[vm + "/state"] = "running"
        event = m.wait(timeout=5)
        if event is None:
            raise SystemExit("no watch event came within 5 seconds")
        print("watch  %s -> event for %s, token %r"
              % (vm + "/state", event.path, event.token))

    # A transaction: both writes land together when the block ends.
    with c.transaction() as t:
        t[vm + "/state"] = "paused"
        t[vm + "/paused-by"] = "quickstart"
    print("transaction committed: state=%r, paused-by=%r"
          % (c[vm + "/state"], c[vm + "/paused-by"]))

    # The retry helper: it redoes the function in a new transaction if
    # another client changed the counter before the commit.
    c[vm + "/counter"] = 0

    def bump(t):
        value = int(t[vm + "/counter"]) + 1
        t[vm + "/counter"] = value
        return value

    print("run_in_transaction: counter 0 -> %d" % c.run_in_transaction(bump))

    c.rm(ROOT)
    print("rm     %s (cleaned up)" % ROOT)


if __name__ == "__main__":
    main()
