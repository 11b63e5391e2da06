"""Helpers shared by the client tests: checks made without pyxs (raw
requests), second connections, and the outcome of a call as a value."""

import contextlib
import errno
import time

import pytest

from pyxs import Client, PyXSError
from pyxs._internal import Op

from ..support.wire import raw_request


#: Seconds a call may take before a test fails (against hangs only).
TIMEOUT = 10

# WRITE's payload is "<path>\0<value>" and may not exceed 4096 bytes.
PAYLOAD_MAX = 4096


def until(condition, what, timeout=30):
    """Wait for *condition* (bounded only against hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "%s never happened" % what
        time.sleep(0.01)


@contextlib.contextmanager
def nothing_sent(client):
    """Fail if ``client`` writes anything to XenStore inside the block."""
    sent = []

    def spy(data, *args, **kwargs):
        sent.append(bytes(data))
        raise AssertionError("pyxs sent %r to XenStore" % bytes(data)[:80])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(client.connection, "send", spy)
        yield sent
    assert sent == []


def other_client(xenstore):
    """A second, independent connection to the same daemon."""
    return Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT)


def outcome(fn, *args):
    """("ok", result) or ("error", errno) for a pyxs call."""
    try:
        return ("ok", fn(*args))
    except PyXSError as e:
        return ("error", e.errno)


def raw_outcome(xenstore, op, *args):
    """What the daemon itself answers to a request, without pyxs:
    ("ok", None) for OK, ("error", errno) for an error reply."""
    payload = b"".join(str(a).encode() + b"\0" for a in args)
    kind, reply = raw_request(xenstore, op, payload, timeout=5)
    if kind == Op.ERROR:
        return ("error", getattr(errno, reply.rstrip(b"\0").decode()))
    assert reply == b"OK\0", reply
    return ("ok", None)


def errno_of(excinfo):
    return excinfo.value.errno


def topmost_missing(xenstore, path):
    """The shallowest ancestor-or-self of ``path`` that does not exist yet
    (what to remove to undo a write of ``path``), or None."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        candidate = "/" + "/".join(parts[:i])
        kind, _ = raw_request(xenstore, Op.READ,
                                          candidate.encode() + b"\0")
        if kind == Op.ERROR:
            return candidate
    return None


def raw_rm(xenstore, path):
    if path is not None:
        raw_request(xenstore, Op.RM, path.encode() + b"\0")


def names_totalling(total, width=63):
    """Unique child names whose DIRECTORY listing ("name\\0" each) is
    exactly ``total`` bytes long."""
    names = []
    remaining = total
    while remaining:
        size = min(width + 1, remaining)
        if 0 < remaining - size < 7:          # leave room for a last name
            size = remaining - 7
        stem = "n%05d-" % len(names)
        names.append((stem + "x" * size)[:size - 1])
        remaining -= size
    assert sum(len(n) + 1 for n in names) == total
    assert len(set(names)) == len(names)
    return names
