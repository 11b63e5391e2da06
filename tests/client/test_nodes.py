"""pyxs.Client on nodes: read and write (text and binary values), mkdir
and rm, listing, permissions and walk."""

import errno

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pyxs import PyXSError, UnexpectedPacket
from pyxs._internal import Op

from ..support.wire import raw_request
from .helpers import errno_of, names_totalling, raw_rm, topmost_missing


# Read and write.

def test_write_and_read_str(client, root):
    client.write(root + "/a", "hello")
    value = client.read(root + "/a")
    assert value == "hello"
    assert type(value) is str


def test_write_bytes(client, root):
    client.write(root + "/b", b"bytes value")
    assert client.read(root + "/b") == "bytes value"
    assert client.read_bytes(root + "/b") == b"bytes value"


@pytest.mark.parametrize("value,expected", [
    (42, "42"),
    (0, "0"),
    (-7, "-7"),
    (3.5, "3.5"),
    (True, "True"),
    (None, "None"),
    ([1, 2], "[1, 2]"),
])
def test_write_other_objects_as_str(client, root, value, expected):
    client.write(root + "/v", value)
    assert client.read(root + "/v") == expected


def test_write_object_with_str(client, root):
    class Thing:
        def __str__(self):
            return "thing-as-text"

    client.write(root + "/thing", Thing())
    assert client.read(root + "/thing") == "thing-as-text"


def test_write_empty_value(client, root):
    client.write(root + "/empty", "")
    assert client.read(root + "/empty") == ""
    assert client.read_bytes(root + "/empty") == b""


def test_write_unicode_is_utf8(client, root):
    client.write(root + "/u", "h\u00e9llo \u2713")
    assert client.read(root + "/u") == "h\u00e9llo \u2713"
    assert client.read_bytes(root + "/u") == "h\u00e9llo \u2713".encode("utf-8")


def test_write_creates_parents(client, root):
    client.write(root + "/x/y/z", "deep")
    assert client.read(root + "/x/y") == ""
    assert client.read(root + "/x") == ""
    assert client.ls(root + "/x") == ["y"]


def test_overwrite(client, root):
    client.write(root + "/o", "first")
    client.write(root + "/o", "second")
    assert client.read(root + "/o") == "second"


def test_item_access(client, root):
    client[root + "/item"] = "value"
    assert client[root + "/item"] == "value"
    client[root + "/item"] = 5
    assert client[root + "/item"] == "5"
    del client[root + "/item"]
    with pytest.raises(PyXSError) as info:
        client[root + "/item"]
    assert errno_of(info) == errno.ENOENT


def test_bytes_paths(client, root):
    client.write((root + "/bp").encode(), b"v")
    assert client.read((root + "/bp").encode()) == "v"


def test_relative_paths_are_under_the_domain_home(client, xenstore, root):
    # A Unix-socket connection is domain 0: relative paths are relative
    # to /local/domain/0.
    name = "pyxs-rel-" + root.rsplit("/", 1)[1]
    created = topmost_missing(xenstore, "/local/domain/0/" + name)
    try:
        client.write(name + "/r", "rel")
        assert client.read("/local/domain/0/" + name + "/r") == "rel"
        assert client.read(name + "/r") == "rel"
        assert client.ls(name) == ["r"]
    finally:
        raw_rm(xenstore, created)


# Binary values.

BINARY = b"\xff\xfe\x00\x80 bin\x01\n\\\xc3("


def test_binary_value_read_bytes(client, root):
    client.write(root + "/bin", BINARY)
    assert client.read_bytes(root + "/bin") == BINARY


def test_binary_value_survives_read_then_write(client, root):
    client.write(root + "/bin", BINARY)
    text = client.read(root + "/bin")
    assert type(text) is str
    client.write(root + "/copy", text)
    assert client.read_bytes(root + "/copy") == BINARY
    client[root + "/copy2"] = client[root + "/bin"]
    assert client.read_bytes(root + "/copy2") == BINARY


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.binary(max_size=300))
def test_any_bytes_round_trip(client, root, value):
    client.write(root + "/h", value)
    assert client.read_bytes(root + "/h") == value
    client.write(root + "/h2", client.read(root + "/h"))
    assert client.read_bytes(root + "/h2") == value


# Mkdir and rm.

def test_mkdir_creates_empty_nodes_and_parents(client, root):
    client.mkdir(root + "/m/n/o")
    assert client.read(root + "/m") == ""
    assert client.read(root + "/m/n") == ""
    assert client.read(root + "/m/n/o") == ""
    assert client.ls(root + "/m/n/o") == []


def test_mkdir_keeps_existing_values(client, root):
    client.write(root + "/keep", "value")
    client.mkdir(root + "/keep")
    client.mkdir(root + "/keep/child")
    assert client.read(root + "/keep") == "value"
    assert client.read(root + "/keep/child") == ""


def test_rm_removes_the_subtree(client, root):
    client.write(root + "/t/a/b", "1")
    client.write(root + "/t/c", "2")
    client.write(root + "/other", "3")
    client.rm(root + "/t")
    for path in (root + "/t", root + "/t/a", root + "/t/a/b", root + "/t/c"):
        with pytest.raises(PyXSError) as info:
            client.read(path)
        assert errno_of(info) == errno.ENOENT
    assert client.ls(root) == ["other"]


def test_rm_missing_node_with_existing_parent_is_not_an_error(client, root):
    # Documented: "It is not an error if path doesn't exist".  C xenstored
    # answers OK; oxenstored 4.17 answers ENOENT, which pyxs must not pass
    # on (the documented behaviour does not depend on the daemon).
    client.mkdir(root)
    client.rm(root + "/missing")
    assert client.ls(root) == []


def test_rm_missing_parent_is_enoent(client, root):
    # Documented: "it is an error if path's immediate parent does not
    # exist either" (both daemons answer ENOENT).
    with pytest.raises(PyXSError) as info:
        client.rm(root + "/no-parent/child")
    assert errno_of(info) == errno.ENOENT


# Listing.

def test_ls(client, root):
    for name in ("c", "a", "b"):
        client.write(root + "/" + name, name)
    children = client.ls(root)
    assert sorted(children) == ["a", "b", "c"]
    assert all(type(name) is str for name in children)
    assert client.ls(root + "/a") == []


def test_ls_missing_is_enoent(client, root):
    with pytest.raises(PyXSError) as info:
        client.ls(root + "/missing")
    assert errno_of(info) == errno.ENOENT



@pytest.mark.parametrize("total", [4095, 4096, 4097, 9000, 13000])
def test_ls_of_large_directory(client, root, xenstore, total):
    # A DIRECTORY reply over 4096 bytes is refused with E2BIG by C
    # xenstored, and pyxs must then page with DIRECTORY_PART.  oxenstored
    # 4.17 does neither: it sends the oversized DIRECTORY reply anyway,
    # breaking the protocol's limit, and answers DIRECTORY_PART with
    # ENOSYS.  pyxs, like Xen's libxenstore, then reports a broken
    # connection (UnexpectedPacket) rather than trust the frame.
    names = names_totalling(total)
    for name in names:
        client.write(root + "/big/" + name, "")
    if xenstore.kind == "oxenstored" and total > 4096:
        with pytest.raises(UnexpectedPacket, match="over the limit of 4096"):
            client.ls(root + "/big")
    else:
        listing = client.ls(root + "/big")
        assert len(listing) == len(names)
        assert set(listing) == set(names)
    # And the client is still fine afterwards.
    client.write(root + "/after", "ok")
    assert client.read(root + "/after") == "ok"


def test_large_directory_what_the_daemons_do(client, root, xenstore):
    # Not a test of pyxs: it pins down the daemons' behaviour that the
    # test above has to cope with, so that a change of it is noticed.
    names = names_totalling(5000)
    for name in names:
        client.write(root + "/big/" + name, "")
    path = (root + "/big").encode()
    kind, reply = raw_request(xenstore, Op.DIRECTORY, path + b"\0")
    part_kind, part = raw_request(xenstore, Op.DIRECTORY_PART, path + b"\x000\x00")
    if xenstore.kind in ("xenstored", "emulator"):  # the emulator models C xenstored
        assert (kind, reply) == (Op.ERROR, b"E2BIG\0")
        assert part_kind == Op.DIRECTORY_PART
    else:
        # oxenstored: one DIRECTORY reply of 5000 bytes, over the
        # protocol's 4096; no DIRECTORY_PART.
        assert kind == Op.DIRECTORY and len(reply) == 5000
        assert set(reply.split(b"\0")[:-1]) == {n.encode() for n in names}
        assert (part_kind, part) == (Op.ERROR, b"ENOSYS\0")


# Permissions.

def test_get_permissions_of_new_node(client, root):
    client.write(root + "/p", "v")
    perms = client.get_permissions(root + "/p")
    assert perms == ["n0"]
    assert all(type(p) is str for p in perms)


@pytest.mark.parametrize("perms", [["n0", "r5"], ["b0"], ["r0", "w3", "b7", "n9"],
                                   ["n5", "r0"]])
def test_set_permissions(client, root, perms):
    client.write(root + "/p", "v")
    client.set_permissions(root + "/p", perms)
    assert client.get_permissions(root + "/p") == perms


def test_set_permissions_bytes_entries(client, root):
    client.write(root + "/p", "v")
    client.set_permissions(root + "/p", [b"n0", b"r5"])
    assert client.get_permissions(root + "/p") == ["n0", "r5"]


def test_new_nodes_inherit_parent_permissions(client, root):
    client.write(root + "/p", "v")
    client.set_permissions(root + "/p", ["n0", "r5"])
    client.write(root + "/p/child", "c")
    assert client.get_permissions(root + "/p/child") == ["n0", "r5"]


def test_get_permissions_missing_is_enoent(client, root):
    with pytest.raises(PyXSError) as info:
        client.get_permissions(root + "/missing")
    assert errno_of(info) == errno.ENOENT


# Walk.

TREE = {
    "": "top",
    "/a": "1",
    "/a/a1": "x",
    "/a/a1/deep": "d",
    "/a/a1/deep/deeper": "dd",
    "/a/a2": "",
    "/b": "2",
    "/b/b1": "y",
    "/b/b2": "z",
    "/b/b2/bb": "w",
    "/c": "",
}


def make_tree(client, root):
    for suffix, value in TREE.items():
        client.write(root + suffix, value)
    expected = {}
    for suffix, value in TREE.items():
        path = root + suffix
        children = {s[len(suffix) + 1:] for s in TREE
                    if s.startswith(suffix + "/") and "/" not in s[len(suffix) + 1:]}
        expected[path] = (value, children)
    return expected


def is_descendant(path, ancestor):
    return path.startswith(ancestor.rstrip("/") + "/")


def check_walk(result, expected, topdown):
    paths = [path for path, _, _ in result]
    assert len(paths) == len(set(paths)), "a node was visited twice"
    assert set(paths) == set(expected)
    for path, value, children in result:
        assert value == expected[path][0], path
        assert set(children) == expected[path][1], path
    index = {path: i for i, path in enumerate(paths)}
    for parent in paths:
        for child in paths:
            if is_descendant(child, parent):
                if topdown:
                    assert index[parent] < index[child], (parent, child)
                else:
                    assert index[parent] > index[child], (parent, child)


def test_walk_topdown(client, root):
    expected = make_tree(client, root)
    result = list(client.walk(root))
    check_walk(result, expected, topdown=True)
    assert result[0][0] == root
    assert list(client.walk(root, topdown=True)) == result


def test_walk_bottom_up(client, root):
    expected = make_tree(client, root)
    result = list(client.walk(root, topdown=False))
    check_walk(result, expected, topdown=False)
    assert result[-1][0] == root


def test_walk_yields_triples_of_str(client, root):
    make_tree(client, root)
    for path, value, children in client.walk(root):
        assert type(path) is str and type(value) is str
        assert isinstance(children, list)
        assert all(type(c) is str for c in children)


def test_walk_prunes_children_in_place(client, root):
    expected = make_tree(client, root)
    seen = []
    for path, _, children in client.walk(root, topdown=True):
        seen.append(path)
        if path == root:
            children.remove("a")
        if path == root + "/b":
            children[:] = [c for c in children if c != "b2"]
    assert set(seen) == {p for p in expected
                         if not is_descendant(p, root + "/a") and p != root + "/a"
                         and not is_descendant(p, root + "/b/b2") and p != root + "/b/b2"}


def test_walk_prune_everything_below_top(client, root):
    make_tree(client, root)
    seen = []
    for path, _, children in client.walk(root):
        seen.append(path)
        del children[:]
    assert seen == [root]


def test_walk_leaf_and_missing(client, root):
    client.write(root + "/leaf", "v")
    assert list(client.walk(root + "/leaf")) == [(root + "/leaf", "v", [])]
    assert list(client.walk(root + "/leaf", topdown=False)) == [(root + "/leaf", "v", [])]
    assert list(client.walk(root + "/missing")) == []
