"""Creating a domain-like subtree in one transaction, as a toolstack does
for a new guest: ``Client.write_many`` (requests pipelined) against a loop
of ``write`` over xen.lowlevel.xs, one round trip at a time.

Keys: ("bulk", implementation, placement) wall time in ms, ("bulkcpu",
...) the client's CPU time in ms.  The subtree is removed before each
creation (untimed) and checked after it.
"""

from base import LOW, PYXS, rotate, timed

#: The frontend keys of one virtual block device.
DEVICE_KEYS = ("backend", "backend-id", "state", "virtual-device", "device-type",
               "ring-ref", "event-channel", "protocol")


def domain_items(top, n):
    """*n* (path, value) writes that build a guest's subtree below *top*:
    a few domain-wide nodes, then as many block devices as it takes."""
    items = [(top + "/name", "bench-guest"), (top + "/domid", "7"),
             (top + "/memory/target", "1048576"), (top + "/control/shutdown", "")]
    i = 0
    while len(items) < n:
        device, key = divmod(i, len(DEVICE_KEYS))
        items.append(("%s/device/vbd/%d/%s" % (top, 51712 + 16 * device, DEVICE_KEYS[key]),
                      "value-%d" % i))
        i += 1
    return items[:n]


def run(ctx, n, rounds):
    client, h, results = ctx.client, ctx.h, ctx.results
    top = "/bench/bulk/domain"
    items = domain_items(top, n)

    def pyxs_create():
        client.run_in_transaction(lambda t: t.write_many(items))

    def lowlevel_create():
        tx = h.transaction_start()
        for path, value in items:
            h.write(tx, path, value)
        if not h.transaction_end(tx):
            raise RuntimeError("the xen.lowlevel.xs transaction did not commit")

    creators = [(PYXS, pyxs_create), (LOW, lowlevel_create)]
    for r, where in ctx.rounds("bulk write", rounds):
        for impl, create in rotate(creators, r):
            if top in client:
                client.rm(top)
            wall, cpu, _ = timed(create)
            values = client.read_many([path for path, _ in items])
            if values != [value for _, value in items]:
                raise RuntimeError("%s did not create the subtree" % impl)
            results.add(("bulk", impl, where), wall * 1e3)
            results.add(("bulkcpu", impl, where), cpu * 1e3)

