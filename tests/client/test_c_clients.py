"""Interoperability with Xen's own C clients (xenstore-read, -write, -ls,
-list, -rm, -exists, -chmod, -watch; libxenstore underneath), on both
daemons: what pyxs writes they read, what they write pyxs reads, and
watches work in both directions.
"""

import contextlib
import errno
import re
import select
import subprocess
import time

import pytest

from pyxs import Event, PyXSError

from ..support import xen_clients

pytestmark = pytest.mark.realdaemon

TIMEOUT = 10

BINARY = b"\x01\x02\xff\x00x y\n\t\r\\\x7f\x80\xc3("


def c(xenstore, name, *args, **kwargs):
    """Run a C client and fail with its stderr unless it succeeded."""
    result = xen_clients.run_c_client(xenstore, name, *args, **kwargs)
    assert result.returncode == 0, (name, args, result.stderr)
    return result


def xen_escape(value):
    """How xenstore-read and xenstore-ls print a value (libxenstore's
    sanitising): printable ASCII as is, backslash doubled, \\t \\n \\r,
    bytes 0-7 as three-digit octal, every other byte as \\xHH."""
    out = []
    for byte in value:
        if byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        elif byte in (0x09, 0x0A, 0x0D):
            out.append({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}[byte])
        elif byte < 8:
            out.append("\\%03o" % byte)
        else:
            out.append("\\x%02x" % byte)
    return "".join(out)


def ls_entries(xenstore, path):
    """``xenstore-ls -f -p path`` as {full path: (printed value, [perms])}."""
    out = c(xenstore, "xenstore-ls", "-f", "-p", path).stdout
    entries = {}
    for line in out.splitlines():
        match = re.match(r'^(\S+) = "(.*)"[ .]*\((.*)\)$', line)
        assert match, line
        entries[match.group(1)] = (match.group(2), match.group(3).split(","))
    return entries


# Pyxs writes, C clients read.

@pytest.mark.parametrize("value", ["hello", "hello world", "", "42",
                                   "h\u00e9llo \u2713"])
def test_xenstore_read_reads_pyxs_text(client, xenstore, root, value):
    client.write(root + "/t", value)
    out = c(xenstore, "xenstore-read", root + "/t", text=False).stdout
    assert out == xen_escape(value.encode("utf-8")).encode() + b"\n"
    raw = c(xenstore, "xenstore-read", "-R", root + "/t", text=False).stdout
    assert raw == value.encode("utf-8")


def test_xenstore_read_reads_pyxs_binary(client, xenstore, root):
    client.write(root + "/bin", BINARY)
    raw = c(xenstore, "xenstore-read", "-R", root + "/bin", text=False).stdout
    assert raw == BINARY
    shown = c(xenstore, "xenstore-read", root + "/bin", text=False).stdout
    assert shown == xen_escape(BINARY).encode() + b"\n"


def test_every_byte_value(client, xenstore, root):
    every = bytes(range(256))
    client.write(root + "/all", every)
    assert c(xenstore, "xenstore-read", "-R", root + "/all", text=False).stdout == every
    # A value read as text and written back by pyxs is still the same bytes.
    client.write(root + "/copy", client.read(root + "/all"))
    assert c(xenstore, "xenstore-read", "-R", root + "/copy", text=False).stdout == every


def test_xenstore_ls_shows_pyxs_nodes_and_permissions(client, xenstore, root):
    client.write(root + "/a", "1")
    client.set_permissions(root + "/a", ["n0", "r5"])
    client.mkdir(root + "/b")
    client.set_permissions(root + "/b", ["b0", "w3", "n7"])
    client.write(root + "/b/c", "two words")     # created after: inherits b's
    client.write(root + "/bin", b"\x00\xff")
    entries = ls_entries(xenstore, root)
    assert entries == {
        root + "/a": ("1", ["n0", "r5"]),
        root + "/b": ("", ["b0", "w3", "n7"]),
        root + "/b/c": ("two words", ["b0", "w3", "n7"]),   # inherited
        root + "/bin": (xen_escape(b"\x00\xff"), ["n0"]),
    }


def test_xenstore_list_lists_pyxs_children(client, xenstore, root):
    names = ["one", "two", "three-3", "x_y"]
    for name in names:
        client.write(root + "/" + name, name)
    out = c(xenstore, "xenstore-list", root).stdout
    assert sorted(out.split()) == sorted(names)


def test_xenstore_exists_after_pyxs_write_and_rm(client, xenstore, root):
    client.write(root + "/e", "v")
    assert xen_clients.run_c_client(xenstore, "xenstore-exists", root + "/e").returncode == 0
    client.rm(root + "/e")
    assert xen_clients.run_c_client(xenstore, "xenstore-exists", root + "/e").returncode != 0
    assert xen_clients.run_c_client(xenstore, "xenstore-read", root + "/e").returncode != 0


def test_pyxs_transaction_visible_to_c_clients_after_commit(client, xenstore, root):
    t = client.transaction()
    t.write(root + "/tx", "v")
    assert xen_clients.run_c_client(xenstore, "xenstore-exists", root + "/tx").returncode != 0
    t.transaction_end(commit=True)
    assert c(xenstore, "xenstore-read", root + "/tx").stdout == "v\n"


# C clients write, pyxs reads.

def test_pyxs_reads_xenstore_write(client, xenstore, root):
    c(xenstore, "xenstore-write", root + "/a", "hello world", root + "/b", "",
      root + "/c/d", "h\u00e9llo")
    assert client.read(root + "/a") == "hello world"
    assert client.read(root + "/b") == ""
    assert client.read(root + "/c/d") == "h\u00e9llo"
    assert client.read(root + "/c") == ""
    assert sorted(client.ls(root)) == ["a", "b", "c"]


def test_pyxs_reads_escaped_binary_from_xenstore_write(client, xenstore, root):
    # Without -R, xenstore-write unescapes its argument.
    c(xenstore, "xenstore-write", root + "/e", "a\\x01\\xff\\000z\\\\")
    expected = b"a\x01\xff\x00z\\"
    assert client.read_bytes(root + "/e") == expected
    text = client.read(root + "/e")
    assert type(text) is str
    client.write(root + "/e2", text)
    assert client.read_bytes(root + "/e2") == expected


def test_pyxs_reads_raw_bytes_from_xenstore_write(client, xenstore, root):
    # -R writes the argument's bytes as they are (argv cannot hold NUL).
    raw = b"\x01\xff\xfe raw\\x41"
    c(xenstore, "xenstore-write", "-R", root + "/r", raw.decode("utf-8", "surrogateescape"))
    assert client.read_bytes(root + "/r") == raw
    client.write(root + "/r2", client.read(root + "/r"))
    assert c(xenstore, "xenstore-read", "-R", root + "/r2", text=False).stdout == raw


def test_pyxs_sees_xenstore_chmod(client, xenstore, root):
    client.write(root + "/p", "v")
    c(xenstore, "xenstore-chmod", root + "/p", "n0", "r7", "b9")
    assert client.get_permissions(root + "/p") == ["n0", "r7", "b9"]
    c(xenstore, "xenstore-chmod", root + "/p", "b0")
    assert client.get_permissions(root + "/p") == ["b0"]


def test_pyxs_sees_xenstore_rm(client, xenstore, root):
    client.write(root + "/gone/child", "v")
    client.write(root + "/stays", "v")
    c(xenstore, "xenstore-rm", root + "/gone")
    with pytest.raises(PyXSError) as info:
        client.read(root + "/gone/child")
    assert info.value.errno == errno.ENOENT
    assert client.ls(root) == ["stays"]


# Watches.

def read_line(stream, deadline):
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([stream], [], [], max(remaining, 0))
    if not ready:
        pytest.fail("xenstore-watch printed nothing in time")
    return stream.readline().decode("utf-8", "surrogateescape").rstrip("\n")


@contextlib.contextmanager
def c_watcher(xenstore, root, count):
    """``xenstore-watch -n count root``, running, its watch in place (the
    registration event read); killed on the way out if still running."""
    watcher = subprocess.Popen(
        xen_clients.c_client("xenstore-watch") + ["-n", str(count), root],
        env=xen_clients.client_env(xenstore.socket_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The watch fires once when it is registered: then it is in place.
        assert read_line(watcher.stdout, time.monotonic() + TIMEOUT) == root
        yield watcher
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_xenstore_watch_sees_pyxs_writes(client, xenstore, root):
    client.mkdir(root)
    with c_watcher(xenstore, root, 4) as watcher:
        client.write(root + "/a", "1")
        client.write(root + "/b/c", "2")
        client.rm(root + "/a")
        out, err = watcher.communicate(timeout=TIMEOUT)
        assert watcher.returncode == 0, err
        assert out.decode().splitlines() == [root + "/a", root + "/b/c", root + "/a"]


def test_xenstore_watch_sees_only_committed_pyxs_changes(client, xenstore, root):
    client.mkdir(root)
    with c_watcher(xenstore, root, 3) as watcher:
        with pytest.raises(KeyError):
            with client.transaction() as t:
                t.write(root + "/aborted", "x")
                raise KeyError("abort")
        with client.transaction() as t:
            t.write(root + "/committed", "x")
        client.write(root + "/last", "x")
        out, err = watcher.communicate(timeout=TIMEOUT)
        assert out.decode().splitlines() == [root + "/committed", root + "/last"]


def test_pyxs_monitor_sees_c_client_changes(client, xenstore, root):
    client.mkdir(root)
    with client.monitor() as m:
        m.watch(root, "tok")
        assert m.wait(timeout=TIMEOUT) == Event(root, "tok")
        c(xenstore, "xenstore-write", root + "/x", "v")
        assert m.wait(timeout=TIMEOUT) == Event(root + "/x", "tok")
        c(xenstore, "xenstore-chmod", root + "/x", "n0", "r3")
        assert m.wait(timeout=TIMEOUT) == Event(root + "/x", "tok")
        c(xenstore, "xenstore-rm", root + "/x")
        assert m.wait(timeout=TIMEOUT) == Event(root + "/x", "tok")
        assert m.wait(timeout=0.2) is None


def test_pyxs_client_watch_sees_c_client_writes(client, xenstore, root):
    client.mkdir(root)
    client.watch(root + "/w", "t1")
    assert client.wait(timeout=TIMEOUT) == Event(root + "/w", "t1")
    c(xenstore, "xenstore-write", root + "/w/deep/node", "v", root + "/elsewhere", "v")
    assert client.wait(timeout=TIMEOUT) == Event(root + "/w/deep/node", "t1")
    assert client.wait(timeout=0.2) is None
    client.unwatch(root + "/w", "t1")
