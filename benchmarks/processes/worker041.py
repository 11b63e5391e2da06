"""The pyxs 0.4.1 worker: measures pyxs 0.4.1 from PyPI in its own process.

    <venv>/bin/python -I worker041.py SOCKET

Run inside the virtual environment that holds pyxs 0.4.1 (see
``old_pyxs.py``); it refuses to run with any other pyxs.  It reads JSON
commands on stdin, one a line, and answers each with a JSON line.
Standard library only, besides the installed pyxs.
"""

import json
import os
import sys


class Receiver041:
    """The watch harness's receiver, over pyxs 0.4.1's Monitor."""

    def __init__(self, client, sock_path):
        self.client, self.sock_path = client, sock_path

    def watch(self, wpath):
        self.wpath = wpath
        self.monitor = self.client.monitor()
        self.monitor.watch(wpath.encode(), b"bench")
        self.events = self.monitor.wait()
        next(self.events)  # XenStore's first event, for the watched path

    def receive(self, n, timeout):
        dog = harness.Watchdog(self.sock_path, self.wpath, n, timeout)
        count = 0
        for _ in self.events:
            count += 1
            if count == n:
                break
        dog.cancel()
        return -1 if dog.fired else count

    def close(self):
        self.monitor.close()


def serve(client, sock_path, command):
    """Do one command; return its answer."""
    what = command["cmd"]
    if what == "seq":
        op, path = command["op"], command["path"].encode()
        if op == "read":
            f, args = client.read, (path,)
        elif op == "write":
            f, args = client.write, (path, command["value"].encode())
        else:
            f, args = client.list, (path,)
        wall, cpu = harness.timed_loop(f, args, command["n"])
        return {"wall": wall, "cpu": cpu}
    if what == "walk":
        c0, t0 = harness.process_time(), harness.perf_counter()
        count = sum(1 for _ in client.walk(command["top"].encode()))
        return {"wall": harness.perf_counter() - t0, "cpu": harness.process_time() - c0,
                "count": count}
    if what in ("watch", "burst"):
        return harness.timed_watch(sock_path, command["wpath"], command["n"],
                                   Receiver041(client, sock_path), command["timeout"],
                                   burst=what == "burst")
    raise SystemExit("unknown command %r" % what)


def main(sock_path):
    import pyxs

    where = os.path.abspath(pyxs.__file__)
    if not where.startswith(os.path.abspath(sys.prefix) + os.sep):
        raise SystemExit("worker imported pyxs from %s, not from %s" % (where, sys.prefix))
    client = pyxs.Client(unix_socket_path=sock_path)
    client.connect()
    print(json.dumps({"ready": True, "pyxs": where}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        print(json.dumps(serve(client, sock_path, command)), flush=True)
    client.close()


if __name__ == "__main__":
    # benchmarks/ holds no pyxs: the installed one is still the one found.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from processes import harness

    main(sys.argv[1])
