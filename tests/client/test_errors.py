"""pyxs.Client refusing invalid input before sending anything, and
reporting the daemon's error replies."""

import errno
import os
import re

import pytest

from pyxs import InvalidPath, InvalidPayload, InvalidPermission, PyXSError

from .helpers import PAYLOAD_MAX, errno_of, nothing_sent


# Invalid input.

INVALID_CALLS = [
    ("read-double-slash", InvalidPath, lambda c, r: c.read(r + "//x")),
    ("read-special", InvalidPath, lambda c, r: c.read("@introduceDomain")),
    ("read-bytes-space", InvalidPath, lambda c, r: c.read_bytes(r + "/a b")),
    ("write-space", InvalidPath, lambda c, r: c.write(r + "/bad path", "v")),
    ("write-empty", InvalidPath, lambda c, r: c.write("", "v")),
    ("write-nul", InvalidPath, lambda c, r: c.write(r + "/a\x00b", "v")),
    ("write-newline", InvalidPath, lambda c, r: c.write(r + "/a\n", "v")),
    ("write-digit", InvalidPath, lambda c, r: c.write(r + "/\u0665", "v")),
    ("setitem", InvalidPath, lambda c, r: c.__setitem__(r + "/", "v")),
    ("mkdir-trailing", InvalidPath, lambda c, r: c.mkdir(r + "/a/")),
    ("rm-empty", InvalidPath, lambda c, r: c.rm("")),
    ("rm-dot", InvalidPath, lambda c, r: c.rm(r + "/a.b")),
    ("ls-accent", InvalidPath, lambda c, r: c.ls(r + "/\u00e9")),
    ("get-perms", InvalidPath, lambda c, r: c.get_permissions(r + "//")),
    ("set-perms-path", InvalidPath, lambda c, r: c.set_permissions(r + "/a b", ["b0"])),
    ("long-abs", InvalidPath, lambda c, r: c.read("/" + "a" * 3072)),
    ("long-rel", InvalidPath, lambda c, r: c.read("a" * 2049)),
    ("perm-letter", InvalidPermission, lambda c, r: c.set_permissions(r, ["x5"])),
    ("perm-junk", InvalidPermission, lambda c, r: c.set_permissions(r, ["b0", "r5x"])),
    ("perm-empty", InvalidPermission, lambda c, r: c.set_permissions(r, [])),
    ("perm-upper", InvalidPermission, lambda c, r: c.set_permissions(r, ["R5"])),
    ("perm-digit", InvalidPermission, lambda c, r: c.set_permissions(r, ["r\u0665"])),
    ("value-too-big", InvalidPayload,
     lambda c, r: c.write(r + "/v", "x" * (PAYLOAD_MAX - len(r + "/v")))),
    ("bytes-too-big", InvalidPayload, lambda c, r: c.write(r + "/v", b"\0" * PAYLOAD_MAX)),
    ("watch-path", InvalidPath, lambda c, r: c.watch(r + "//w", "tok")),
    ("watch-special", InvalidPath, lambda c, r: c.watch("@fooDomain", "tok")),
]


@pytest.mark.parametrize("exc,call", [(e, f) for _, e, f in INVALID_CALLS],
                         ids=[name for name, _, _ in INVALID_CALLS])
def test_invalid_input_is_refused_before_sending(client, root, exc, call):
    client.write(root + "/alive", "yes")
    t = client.transaction()           # would be lost if the client reconnected
    t.write(root + "/in-tx", "kept")
    with nothing_sent(client):
        with pytest.raises(exc) as info:
            call(client, root)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, PyXSError)
    # Nothing happened, and the client and its connection are intact.
    t.transaction_end(commit=True)
    assert client.read(root + "/in-tx") == "kept"
    assert client.read(root + "/alive") == "yes"
    assert sorted(client.ls(root)) == ["alive", "in-tx"]


def test_largest_value_is_sent(client, xenstore, root):
    path = root + "/v"
    value = b"y" * (PAYLOAD_MAX - len(path) - 1)    # payload exactly 4096 bytes
    try:
        client.write(path, value)
    except PyXSError as e:
        # oxenstored 4.17 refuses values over 2048 bytes even from dom0.
        assert xenstore.kind == "oxenstored" and e.errno == errno.E2BIG
    else:
        assert client.read_bytes(path) == value
    # The bulk path keeps the same limit.
    if xenstore.kind != "oxenstored":
        client.write_many([(path, value[:-1]), (path, value)])
        assert client.read_bytes(path) == value
    limit = r"^a request of 4097 bytes is over the limit of 4096 of '%s'$" % re.escape(
        xenstore.socket_path)
    with nothing_sent(client):
        with pytest.raises(InvalidPayload, match=limit):
            client.write(path, value + b"y")
        with pytest.raises(InvalidPayload, match=limit):
            client.write_many([(path, value), (path, value + b"y")])


# Error replies.

def test_error_reply_becomes_pyxs_error(client, root):
    with pytest.raises(PyXSError) as info:
        client.read(root + "/missing")
    e = info.value
    assert type(e) is PyXSError
    assert e.errno == errno.ENOENT
    assert e.args == (errno.ENOENT, os.strerror(errno.ENOENT))
    # The client is still usable after an error reply.
    client.write(root + "/ok", "fine")
    assert client.read(root + "/ok") == "fine"


def test_error_reply_for_read_bytes(client, root):
    with pytest.raises(PyXSError) as info:
        client.read_bytes(root + "/missing")
    assert errno_of(info) == errno.ENOENT


def test_many_errors_in_a_row(client, root):
    for i in range(20):
        with pytest.raises(PyXSError) as info:
            client.read(root + "/missing%d" % i)
        assert errno_of(info) == errno.ENOENT
    client.write(root + "/x", "1")
    assert client.read(root + "/x") == "1"
