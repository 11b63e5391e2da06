"""Watches: setting and removing them, and firing them on changes
(xenstored_watch.c)."""

import errno
from typing import TYPE_CHECKING, Optional

from .._internal import Op, split_strings
from . import _core
from ._model import P_READ, Connection, Node, Perms, Watch, get_parent, is_child, is_valid_nodename
from ._outcome import Outcome, RequestFailed

if TYPE_CHECKING:
    from ._store import Store


# xenstored_watch.c: fire_watches()
def fire_watches(store: "Store", out: Outcome, conn: Optional[Connection], name: bytes,
                 node: Optional[Node], *, exact: bool = False,
                 perms: Optional[Perms] = None) -> None:
    """Send the events for a change of node *name* (*node* its new state,
    if at hand, *perms* its old permissions, if they changed) to every
    connection with a matching watch that may see it: watches on the
    node and, unless *exact*, on its ancestors.

    In a transaction, the watches are noted on the accessed node instead,
    to fire at commit.
    """
    if conn is not None and conn.transaction is not None:
        accessed = conn.transaction.accessed.get(name)
        if accessed is None:
            conn.transaction.fail = True
        elif not accessed.fire_watch:
            accessed.fire_watch = True
            accessed.watch_exact = exact
        elif not exact:
            accessed.watch_exact = False
        return
    special = name.startswith(b"@")
    for other in list(store.connections):
        if special:
            special_perms = store.special_perms.get(name)
            if special_perms is None or \
                    not _core.perm_for_conn(other, special_perms) & P_READ:
                continue
        elif not _watch_permitted(store, other, name, node, perms):
            continue
        for watch in other.watches:
            if (name == watch.node) if exact else is_child(name, watch.node):
                out.event(other, event_path(watch, name), watch.token)


# xenstored_watch.c: watch_permitted()
def _watch_permitted(store: "Store", conn: Connection, name: bytes, node: Optional[Node],
                     perms: Optional[Perms]) -> bool:
    """Whether *conn* may see a change of node *name*: it can read the
    node (with its old *perms* or its new ones), or its parent."""
    if perms is not None and _core.perm_for_conn(conn, perms) & P_READ:
        return True
    if node is None:
        node = _core.read_node(store, conn, name)
        if node is None:
            return False
    if _core.perm_for_conn(conn, node.perms) & P_READ:
        return True
    parent = node.parent
    if parent is None:
        parent = _core.read_node(store, conn, get_parent(node.name))
        if parent is None:
            return False
    return bool(_core.perm_for_conn(conn, parent.perms) & P_READ)


# xenstored_watch.c: get_watch_path()
def event_path(watch: Watch, name: bytes) -> bytes:
    """The path an event for node *name* shows: relative to the home a
    relative watch was set from."""
    if watch.relative_path is None:
        return name
    path = name[len(watch.relative_path):]
    return path[1:] if path.startswith(b"/") else path


# xenstored_watch.c: conn_delete_all_watches()
def delete_all_watches(conn: Connection) -> None:
    if conn.domain is not None:
        conn.domain.watch_count = max(0, conn.domain.watch_count - len(conn.watches))
    del conn.watches[:]


# Requests.

# xenstored_watch.c: do_watch()
def op_watch(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    args = split_strings(payload)
    if len(args) != 2:
        raise RequestFailed(errno.EINVAL)
    path, token = args
    if path.startswith(b"@"):
        relative = False
        err = errno.EINVAL if len(path) > store.quotas["path-max"] else 0
    else:
        relative = not path.startswith(b"/")
        path = _core.canonicalize(conn, path)
        err = 0 if is_valid_nodename(path, store.quotas["path-max"]) else errno.EINVAL
    # xenstored_watch.c: check_watch_path() leaves its result in errno,
    # 0 included.
    store.errno = err
    if err:
        raise RequestFailed(err)
    for watch in conn.watches:
        if watch.node == path and watch.token == token:
            raise RequestFailed(errno.EEXIST)
    if conn.domain is not None and not conn.privileged \
            and conn.domain.watch_count > store.quotas["watches"]:
        raise RequestFailed(errno.E2BIG)
    watch = Watch(path, token, conn.home if relative else None)
    conn.watches.append(watch)
    if conn.domain is not None:
        conn.domain.watch_count += 1
    out.ack(Op.WATCH)
    out.event(conn, event_path(watch, path), token)


# xenstored_watch.c: do_unwatch()
def op_unwatch(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    args = split_strings(payload)
    if len(args) != 2:
        raise RequestFailed(errno.EINVAL)
    path = _core.canonicalize(conn, args[0])
    for watch in conn.watches:
        if watch.node == path and watch.token == args[1]:
            conn.watches.remove(watch)
            if conn.domain is not None and conn.domain.watch_count:
                conn.domain.watch_count -= 1
            out.ack(Op.UNWATCH)
            return
    raise RequestFailed(errno.ENOENT)
