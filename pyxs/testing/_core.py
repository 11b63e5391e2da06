"""The node tree: reading, writing, creating and removing nodes, the
permission checks, and the requests on nodes (xenstored_core.c).

Request handlers take the store, the :class:`~._outcome.Outcome` of the
call, the requesting connection and the payload; they answer through the
outcome or raise :class:`~._outcome.RequestFailed`.

Lower down, functions that find no node return None with
:attr:`Store.errno <._store.Store.errno>` saying why, as the daemon's
do: that variable is part of what the daemon shows (see :mod:`._store`).
A *conn* of None is the daemon acting on its own behalf, with no
transaction and no quotas.
"""

import errno
import enum
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, overload

from .._cnumbers import PERM_LETTERS, parse_perm, signed, u32
from .._internal import PAYLOAD_MAX, Op, split_strings
from . import _domain, _transaction, _watch
from ._model import (
    P_ALL, P_IGNORE, P_NONE, P_OWNER, P_READ, P_WRITE, Access, Connection, Node,
    Perms, atoi, basename, child_name, get_parent, is_valid_nodename, onearg)
from ._outcome import Outcome, RequestFailed

if TYPE_CHECKING:
    from ._store import Store

# Errors a failed node read passes on as they are, where any other would
# be replaced by a more telling one.
_RESOURCE_ERRORS = (errno.ENOMEM, errno.ENOSPC)


# Connections and permissions.

# xenstored_core.c: perm_for_conn()
def perm_for_conn(conn: Connection, perms: Perms) -> int:
    """The access bits *conn* has to a node with *perms*."""
    target = conn.target.domid if conn.target is not None else None
    if conn.privileged or perms[0][0] == conn.domid or perms[0][0] == target:
        return P_ALL
    for domid, bits in perms[1:]:
        if not bits & P_IGNORE and (domid == conn.domid or domid == target):
            return bits & P_ALL
    return perms[0][1] & P_ALL


# xenstored_core.c: destroy_conn()
def forget_connection(store: "Store", conn: Connection) -> None:
    """Drop *conn* with its watches and transactions, and mark it
    :attr:`~._model.Connection.closed`."""
    _watch.delete_all_watches(conn)
    _transaction.delete_all_transactions(conn)
    conn.closed = True
    if conn in store.connections:
        store.connections.remove(conn)


# Reading and writing one node.

# xenstored_core.c: read_node()
def read_node(store: "Store", conn: Optional[Connection], name: bytes) -> Optional[Node]:
    """A copy of node *name* as *conn* sees it (through its transaction,
    if any), or None with errno set (ENOENT, or a transaction's ENOSPC)."""
    trans = conn.transaction if conn is not None else None
    if trans is not None and name in trans.accessed:
        stored = trans.copies.get(name)
    else:
        stored = store.nodes.get(name)
    if stored is None:
        try:
            _transaction.access_node(store, conn, Node(name), Access.READ)
        except RequestFailed:
            return None
        store.errno = errno.ENOENT
        return None
    node = stored.copy()
    _domain.adjust_perms(store, node)
    try:
        _transaction.access_node(store, conn, node, Access.READ)
    except RequestFailed:
        return None
    return node


# xenstored_core.c: write_node_raw()
def write_node_raw(store: "Store", conn: Optional[Connection], table: Dict[bytes, Node],
                   node: Node, *, quota_check: bool) -> None:
    """Store *node* in *table* (the tree or a transaction's copies).

    :raises RequestFailed: ENOSPC if *quota_check* and the record is over
        the node-size quota of an unprivileged *conn*.
    """
    _domain.adjust_perms(store, node)
    if (quota_check and conn is not None and not conn.privileged
            and node.record_size() >= store.quotas["node-size"]):
        store.errno = errno.ENOSPC
        raise RequestFailed(errno.ENOSPC)
    table[node.name] = node.copy()


# xenstored_core.c: write_node()
def write_node(store: "Store", conn: Optional[Connection], node: Node, *,
               quota_check: bool = True) -> None:
    """Write *node* back with a new generation, into *conn*'s transaction
    if it has one (which then fails with the write).

    :raises RequestFailed: with errno, if the access or the quota check
        fails.
    """
    table = _transaction.access_node(store, conn, node, Access.WRITE)
    assert table is not None  # Only deletions of unseen nodes give none.
    try:
        write_node_raw(store, conn, table, node, quota_check=quota_check)
    except RequestFailed:
        if conn is not None and conn.transaction is not None:
            conn.transaction.fail = True
        raise


# Finding a node for a request.

# xenstored_core.c: ask_parents()
def _parent_perm(store: "Store", conn: Connection, name: bytes) -> int:
    """*conn*'s access to the nearest existing ancestor of *name*.

    :raises RequestFailed: with errno, if reading one fails for want of
        resources.
    """
    while True:
        name = get_parent(name)
        node = read_node(store, conn, name)
        if node is not None:
            return perm_for_conn(conn, node.perms)
        if store.errno in _RESOURCE_ERRORS:
            raise RequestFailed(store.errno)
        if name == b"/":
            return P_NONE


# xenstored_core.c: errno_from_parents()
def _errno_from_parents(store: "Store", conn: Connection, name: bytes, err: int,
                        perm: int) -> int:
    """The error to report for a node that could not be had with *perm*:
    *err*, unless *conn* may not even see the parent (EACCES), so that
    missing nodes do not leak."""
    if err == errno.ENOMEM:
        return err
    try:
        parent_perm = _parent_perm(store, conn, name)
    except RequestFailed:
        return store.errno
    return err if parent_perm & perm else errno.EACCES


# xenstored_core.c: canonicalize()
@overload
def canonicalize(conn: Connection, name: bytes) -> bytes: ...


@overload
def canonicalize(conn: Connection, name: Optional[bytes]) -> Optional[bytes]: ...


def canonicalize(conn: Connection, name: Optional[bytes]) -> Optional[bytes]:
    """*name* made absolute: relative names are under *conn*'s home."""
    if name is None or name.startswith(b"/") or name.startswith(b"@"):
        return name
    return conn.home + b"/" + name


# xenstored_core.c: get_node_canonicalized()
@overload
def get_node(store: "Store", conn: Connection, name: bytes,
             perm: int) -> Tuple[Optional[Node], bytes]: ...


@overload
def get_node(store: "Store", conn: Connection, name: Optional[bytes],
             perm: int) -> Tuple[Optional[Node], Optional[bytes]]: ...


def get_node(store: "Store", conn: Connection, name: Optional[bytes],
             perm: int) -> Tuple[Optional[Node], Optional[bytes]]:
    """Canonicalize *name* and read the node, checking *perm*.  Return the
    node (None on failure, with errno set) and the canonical name (None
    when *name* is: a malformed request, which leaves errno as it was)."""
    name = canonicalize(conn, name)
    if name is None:
        return None, None
    if not is_valid_nodename(name, store.quotas["path-max"]):
        store.errno = errno.EINVAL
        return None, name
    node = read_node(store, conn, name)
    if node is not None and (perm_for_conn(conn, node.perms) & perm) != perm:
        store.errno = errno.EACCES
        node = None
    if node is None and store.errno not in _RESOURCE_ERRORS:
        store.errno = _errno_from_parents(store, conn, name, store.errno, perm)
    return node, name


def _get_node_or_fail(store: "Store", conn: Connection, name: Optional[bytes],
                      perm: int) -> Tuple[Node, bytes]:
    """:func:`get_node`, failing the request with errno if there is no
    node to be had."""
    node, name = get_node(store, conn, name, perm)
    if node is None:
        raise RequestFailed(store.errno)
    assert name is not None  # A node was found by it.
    return node, name


# Creating and removing nodes.

# xenstored_core.c: construct_node()
def _construct_node(store: "Store", conn: Connection, name: bytes) -> Optional[Node]:
    """Node *name* and its missing ancestors, not yet written: each new
    node's :attr:`~._model.Node.parent` leads up to the existing ancestor,
    which lists the new child already.  None, with errno set, when no
    ancestor can be read."""
    names = []
    parent = None
    parentname = name
    while parent is None:
        names.append(parentname)
        parentname = get_parent(parentname)
        parent = read_node(store, conn, parentname)
        if parent is None and (store.errno != errno.ENOENT or parentname == b"/"):
            return None
    node = None
    for newname in reversed(names):
        parent.children.append(basename(newname))
        perms = [list(p) for p in parent.perms]
        if not conn.privileged:
            perms[0][0] = conn.domid
        node = Node(newname, perms=perms)
        node.parent = parent
        parent = node
    return node


# xenstored_core.c: create_node()
def _create_node(store: "Store", conn: Connection, name: bytes, data: bytes) -> Node:
    """Create node *name* holding *data*, with its missing ancestors; on
    failure, undo what was written.

    :raises RequestFailed: with errno.
    """
    node = _construct_node(store, conn, name)
    if node is None:
        raise RequestFailed(store.errno)
    if conn.transaction is not None:
        conn.transaction.node_created = True
    node.data = data
    written: List[Node] = []
    item: Optional[Node] = node
    try:
        while item is not None:
            if item.parent is not None and \
                    _domain.node_count(conn) >= store.quotas["nodes"]:
                raise RequestFailed(errno.ENOSPC)
            write_node(store, conn, item)
            written.append(item)
            if item.parent is not None:
                _domain.entry_change(store, conn, item, +1)
            item = item.parent
    except RequestFailed as failure:
        table = store.nodes if conn.transaction is None else conn.transaction.copies
        for done in written:
            table.pop(done.name, None)
            if done.parent is not None:
                _domain.entry_change(store, conn, done, -1)
            if conn.transaction is not None:
                conn.transaction.fail = True
        store.errno = failure.code
        raise
    return node


class Visit(enum.Enum):
    """What a :func:`walk` callback asks for next (C: ``WALK_TREE_*``)."""

    #: Go on.
    CONTINUE = "continue"
    #: Do not visit the node's children.
    SKIP_CHILDREN = "skip children"
    #: End the walk.
    STOP = "stop"
    #: Go on, after dropping the node from its parent's child list.
    FORGET = "forget"


class WalkAborted(Exception):
    """A :func:`walk` could not go on (C: ``WALK_TREE_ERROR_STOP``); errno
    is left as it was."""


WalkCallback = Callable[[Optional[Connection], Node], Visit]


# xenstored_core.c: walk_node_tree()
def walk(store: "Store", conn: Optional[Connection], root: bytes,
         enter: Optional[WalkCallback] = None, leave: Optional[WalkCallback] = None) -> None:
    """Depth-first walk of the subtree at *root*: *enter* before a node's
    children, *leave* after them, in the daemon's order.  A node is read
    just before it is visited, so that callbacks may change the tree.

    :raises WalkAborted: if a listed child is missing or a parent cannot
        be written back.
    :raises RequestFailed: what a callback raises.
    """
    visit = Visit.CONTINUE
    node: Optional[Node] = None
    parent: Optional[Node] = None
    name = root
    while visit is not Visit.STOP:
        if node is not None:
            if visit is not Visit.CONTINUE or node.next_child >= len(node.children):
                parent = node.parent
                visit = _walk_call(store, conn, node, parent, leave)
                if parent is None:
                    break
                node = parent
                continue
            name = child_name(node.name, node.children[node.next_child])
            node.next_child += 1
            parent = node
        node = read_node(store, conn, name)
        if node is None:
            # A child listed but missing: the daemon's store is corrupt.
            raise WalkAborted(name)
        node.parent = parent
        node.next_child = 0
        visit = _walk_call(store, conn, node, parent, enter)


# xenstored_core.c: walk_call_func()
def _walk_call(store: "Store", conn: Optional[Connection], node: Node,
               parent: Optional[Node], func: Optional[WalkCallback]) -> Visit:
    if func is None:
        return Visit.CONTINUE
    visit = func(conn, node)
    if visit is Visit.FORGET and parent is not None:
        # Forget the child just visited in the parent's list.
        parent.next_child -= 1
        del parent.children[parent.next_child]
        try:
            write_node(store, conn, parent, quota_check=False)
        except RequestFailed:
            raise WalkAborted(parent.name) from None
    # The root's own FORGET is done by rm_node, once the walk is over.
    return Visit.CONTINUE if visit is Visit.FORGET else visit


# xenstored_core.c: rm_node()
def rm_node(store: "Store", out: Outcome, conn: Optional[Connection], name: bytes) -> None:
    """Remove node *name* and everything below it, firing their watches.

    :raises RequestFailed: with errno.
    """
    parent = read_node(store, conn, get_parent(name))
    if parent is None:
        raise RequestFailed(store.errno if store.errno in _RESOURCE_ERRORS else errno.EINVAL)

    # xenstored_core.c: delnode_sub()
    def delete(conn: Optional[Connection], node: Node) -> Visit:
        table = _transaction.access_node(store, conn, node, Access.DELETE)
        if table is not None and table.pop(node.name, None) is None:
            store.errno = errno.EIO
            raise RequestFailed(errno.EIO)
        _watch.fire_watches(store, out, conn, node.name, node, exact=node.name != name)
        _domain.entry_change(store, conn, node, -1)
        return Visit.FORGET

    try:
        walk(store, conn, name, leave=delete)
    except WalkAborted:
        store.errno = errno.EIO
        raise RequestFailed(errno.EIO) from None
    base = basename(name)
    if base not in parent.children:
        store.errno = errno.EIO
        raise RequestFailed(errno.EIO)
    parent.children.remove(base)
    try:
        write_node(store, conn, parent, quota_check=False)
    except RequestFailed:
        store.errno = errno.EIO
        raise RequestFailed(errno.EIO) from None
    store.errno = 0


# Requests.

# xenstored_core.c: send_directory()
def op_directory(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    node, _ = _get_node_or_fail(store, conn, onearg(payload), P_READ)
    out.reply(Op.DIRECTORY, node.children_bytes())


# xenstored_core.c: send_directory_part()
def op_directory_part(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    if payload.count(b"\0") != 2:
        raise RequestFailed(errno.EINVAL)
    args = split_strings(payload)
    node, _ = _get_node_or_fail(store, conn, args[0], P_READ)
    offset = u32(atoi(args[1]))
    gen = b"%d\0" % node.generation
    children = node.children_bytes()
    if offset >= len(children):
        out.reply(Op.DIRECTORY_PART, gen + b"\0")
        return
    # As many whole names as fit, and an empty one after the last.
    maxlen = PAYLOAD_MAX - len(gen) - 1
    length = 0
    pos = offset
    while True:
        child_len = children.index(b"\0", pos) - pos
        if length + child_len >= maxlen:
            break
        length += child_len + 1
        pos += child_len + 1
        if offset + length == len(children):
            break
    data = gen + children[offset:offset + length]
    if offset + length == len(children):
        data += b"\0"
    out.reply(Op.DIRECTORY_PART, data)


# xenstored_core.c: do_read()
def op_read(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    node, _ = _get_node_or_fail(store, conn, onearg(payload), P_READ)
    out.reply(Op.READ, node.data)


# xenstored_core.c: do_write()
def op_write(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    nul = payload.find(b"\0")
    if nul < 0:
        raise RequestFailed(errno.EINVAL)
    data = payload[nul + 1:]
    node, name = get_node(store, conn, payload[:nul], P_WRITE)
    if node is None:
        if store.errno != errno.ENOENT:
            raise RequestFailed(store.errno)
        node = _create_node(store, conn, name, data)
    else:
        node.data = data
        write_node(store, conn, node)
    _watch.fire_watches(store, out, conn, name, node)
    out.ack(Op.WRITE)


# xenstored_core.c: do_mkdir()
def op_mkdir(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    node, name = get_node(store, conn, onearg(payload), P_WRITE)
    if node is None:
        if store.errno != errno.ENOENT:
            raise RequestFailed(store.errno)
        if name is None:
            raise RequestFailed(errno.ENOMEM)
        node = _create_node(store, conn, name, b"")
        _watch.fire_watches(store, out, conn, name, node)
    out.ack(Op.MKDIR)


# xenstored_core.c: do_rm()
def op_rm(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    node, name = get_node(store, conn, onearg(payload), P_WRITE)
    if node is None:
        if store.errno == errno.ENOENT:
            if name is None:
                raise RequestFailed(errno.ENOMEM)
            # Removing a missing node whose parent exists succeeds.
            if read_node(store, conn, get_parent(name)) is not None:
                out.ack(Op.RM)
                return
            if store.errno not in _RESOURCE_ERRORS:
                store.errno = errno.ENOENT
        raise RequestFailed(store.errno)
    assert name is not None  # A node was found by it.
    if name == b"/":
        raise RequestFailed(errno.EINVAL)
    rm_node(store, out, conn, name)
    out.ack(Op.RM)


# xenstored_core.c: do_get_perms()
def op_get_perms(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    node, _ = _get_node_or_fail(store, conn, onearg(payload), P_READ)
    text = []
    for domid, bits in node.perms:
        # xenstored_core.c: perms_to_strings()
        letter = PERM_LETTERS.get(bits & ~P_IGNORE)
        if letter is None:
            store.errno = errno.EINVAL
            raise RequestFailed(errno.EINVAL)
        text.append(letter + b"%d\0" % signed(domid, 32))
    out.reply(Op.GET_PERMS, b"".join(text))


# xenstored_core.c: do_set_perms()
def op_set_perms(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    count = payload.count(b"\0")
    if count < 2:
        raise RequestFailed(errno.EINVAL)
    count -= 1
    if not conn.privileged and count > store.quotas["permissions"]:
        raise RequestFailed(errno.ENOSPC)
    args = split_strings(payload)
    perms = []
    for entry in args[1:1 + count]:
        perm = parse_perm(entry)  # access bits as P_READ and P_WRITE
        if perm is None:
            store.errno = errno.EINVAL
            raise RequestFailed(errno.EINVAL)
        perms.append([u32(perm[0]), perm[1]])
    for domid, _ in perms:
        _domain.find_or_alloc_domain(store, domid)
    name = args[0]
    if name.startswith(b"@"):
        _domain.set_perms_special(store, out, conn, name, perms)
        return
    node, name = _get_node_or_fail(store, conn, name, P_WRITE | P_OWNER)
    if not conn.privileged and perms[0][0] != node.perms[0][0]:
        raise RequestFailed(errno.EPERM)
    old_perms = node.perms
    _domain.entry_change(store, conn, node, -1)
    node.perms = perms
    _domain.entry_change(store, conn, node, +1)
    try:
        write_node(store, conn, node)
    except RequestFailed:
        err = store.errno
        _domain.entry_change(store, conn, node, -1)
        node.perms = old_perms
        _domain.entry_change(store, conn, node, +1)
        store.errno = err
        raise
    _watch.fire_watches(store, out, conn, name, node, perms=old_perms)
    out.ack(Op.SET_PERMS)
