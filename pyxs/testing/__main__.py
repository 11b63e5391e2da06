"""Serve an emulated XenStore in the foreground.

    python -m pyxs.testing --socket /tmp/xs/socket [--xenbus PATH | --pty] [--domid N]

prints where it listens and serves until SIGINT or SIGTERM.
"""

import argparse
import signal
import sys
import threading
from typing import List, Optional

from . import XenStoreServer


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyxs.testing",
        description="Serve an in-process XenStore emulator (modelled on Xen 4.17's "
                    "C xenstored) until SIGINT or SIGTERM.")
    parser.add_argument("--socket", metavar="PATH",
                        help="Unix socket to listen on (default: one in a new "
                             "temporary directory)")
    parser.add_argument("--pty", action="store_true",
                        help="also serve a pseudo-terminal standing in for a "
                             "XenBus device")
    parser.add_argument("--xenbus", metavar="PATH",
                        help="also serve a guest's XenBus device at PATH (a symbolic "
                             "link to a FUSE file; each open is its own conversation "
                             "as domain N; needs root or fusermount3)")
    parser.add_argument("--domid", type=int, default=None, metavar="N",
                        help="the domain the XenBus device (default 1) or the "
                             "pseudo-terminal (default 0) speaks for")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            if args.pty and args.xenbus:
                raise ValueError("--pty and --xenbus cannot be used together")
            server = XenStoreServer(
                args.socket, pty=args.pty,
                pty_domid=0 if args.domid is None else args.domid,
                xenbus_path=args.xenbus,
                xenbus_domid=1 if args.domid is None else args.domid)
            server.start()
        except (OSError, ValueError) as exc:
            print("pyxs.testing: cannot start: %s" % exc, file=sys.stderr)
            return 1
        try:
            print("socket: %s" % server.socket_path)
            if server.pty_path:
                print("pty: %s (domain %d)" % (server.pty_path, server._pty_domid))
            if server.xenbus_path:
                print("xenbus: %s (domain %d)" % (server.xenbus_path, server.xenbus_domid))
            sys.stdout.flush()
            while not stop.wait(0.5):
                if not server.running:
                    print("pyxs.testing: the server stopped unexpectedly",
                          file=sys.stderr)
                    return 1
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
