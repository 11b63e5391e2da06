"""The watch benchmarks' writer process (standard library only).

    writer.py pipelined|burst SOCKET WPATH N

It creates *N* nodes below *WPATH*, prints "ready", waits for "go" on
stdin, then rewrites them all and prints its timing as JSON:
``pipelined`` keeps many writes in flight; ``burst`` makes one write at a
time and also reports the slowest (a daemon that stalls its writers
while a watcher's events pile up shows there).
"""

import json
import os
import socket
import sys


def main(mode, sock_path, wpath, n):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sock_path)
        harness.write_on(sock, harness.writer_items(wpath, n))  # the nodes exist first
        items = harness.writer_items(wpath, n, b"new value")
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        perf_counter = harness.perf_counter
        if mode == "pipelined":
            t0 = perf_counter()
            harness.write_on(sock, items)
            print(json.dumps({"elapsed": perf_counter() - t0}), flush=True)
            return
        # A stalled daemon must not hang the benchmark.
        sock.settimeout(60)
        worst = 0.0
        t0 = perf_counter()
        for i in range(n):
            start = perf_counter()
            harness.write_on(sock, items[i:i + 1], depth=1)
            worst = max(worst, perf_counter() - start)
        print(json.dumps({"elapsed": perf_counter() - t0, "worst": worst}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from processes import harness

    if len(sys.argv) != 5 or sys.argv[1] not in ("pipelined", "burst"):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
