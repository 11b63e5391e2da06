"""Domains: their records and node counts, the special nodes'
permissions, and the requests on domains (xenstored_domain.c).

There is no hypervisor: every domain id counts as existing, as with the
real daemon run on a stand-in for one, and a domain is introduced only
by :meth:`Store.connect <._store.Store.connect>` giving it a ring
connection (``INTRODUCE`` cannot map a ring page here).
"""

import errno
from typing import TYPE_CHECKING, Optional

from .._cnumbers import u32
from .._internal import Op, split_strings
from . import _core, _transaction, _watch
from ._model import P_IGNORE, P_OWNER, P_WRITE, Connection, Domain, Node, Perms, atoi, onearg
from ._outcome import Outcome, RequestFailed

if TYPE_CHECKING:
    from ._store import Store

_DOMID_SELF = 0x7FF0


# Records.

# xenstored_domain.c: alloc_domain()
def alloc_domain(store: "Store", domid: int) -> Domain:
    domain = Domain(domid, store.generation)
    store.domains[domid] = domain
    # New domains go to the front of the daemon's list.
    store.domains.move_to_end(domid, last=False)
    return domain


# xenstored_domain.c: find_or_alloc_domain()
def find_or_alloc_domain(store: "Store", domid: int) -> Domain:
    domain = store.domains.get(domid)
    return domain if domain is not None else alloc_domain(store, domid)


def _introduced(store: "Store", domid: int) -> Optional[Domain]:
    domain = store.domains.get(domid)
    return domain if domain is not None and domain.introduced else None


# xenstored_domain.c: find_connected_domain()
def _connected_domain(store: "Store", domid: int) -> Domain:
    """Introduced domain *domid*, which has a ring connection.

    :raises RequestFailed: ENOENT if it is not introduced, EINVAL if it
        has no connection.
    """
    domain = _introduced(store, domid)
    if domain is None:
        raise RequestFailed(errno.ENOENT)
    if domain.conn is None:
        raise RequestFailed(errno.EINVAL)
    return domain


# xenstored_domain.c: onearg_domain()
def _onearg_domain(store: "Store", payload: bytes) -> Domain:
    arg = onearg(payload)
    if arg is None:
        raise RequestFailed(errno.EINVAL)
    domid = u32(atoi(arg))
    if not domid:
        raise RequestFailed(errno.EINVAL)
    return _connected_domain(store, domid)


# xenstored_domain.c: domain_adjust_node_perms()
def adjust_perms(store: "Store", node: Node) -> None:
    """Mark the entries of domains younger than *node* (their id was
    reused since) to be ignored."""
    for entry in node.perms[1:]:
        if entry[1] & P_IGNORE:
            continue
        domain = store.domains.get(entry[0])
        if domain is None or domain.generation > node.generation:
            entry[1] |= P_IGNORE


# Node counts.

# xenstored_domain.c: domain_entry()
def node_count(conn: Optional[Connection]) -> int:
    """The number of nodes *conn*'s domain owns, for the nodes quota; 0
    for a privileged connection."""
    if conn is not None and conn.domain is not None and not conn.privileged:
        return conn.domain.node_count
    return 0


# xenstored_domain.c: domain_entry_inc(), domain_entry_dec()
def entry_change(store: "Store", conn: Optional[Connection], node: Node, delta: int) -> None:
    """Count *node* in (*delta* +1) or out (-1) of its owner's nodes; in a
    transaction, only at commit.  Sets errno to ENOENT for an unknown
    owner losing a node."""
    if not node.perms:
        return
    domid = node.perms[0][0]
    if conn is not None and conn.transaction is not None:
        changes = conn.transaction.changed_domains
        changes[domid] = changes.get(domid, 0) + delta
        return
    domain: Optional[Domain]
    if conn is not None and domid == conn.domid and conn.domain is not None:
        domain = conn.domain
    elif delta > 0:
        domain = find_or_alloc_domain(store, domid)
    else:
        domain = store.domains.get(domid)
        if domain is None:
            store.errno = errno.ENOENT
            return
    domain.node_count += delta


# Special nodes.

# xenstored_domain.c: set_perms_special()
def set_perms_special(store: "Store", out: Outcome, conn: Connection, name: bytes,
                      perms: Perms) -> None:
    """``SET_PERMS`` on a special node (``@releaseDomain``...).

    :raises RequestFailed: with errno as it stands, whatever it holds, if
        *conn* may not change them (as the daemon does).
    """
    special = store.special_perms.get(name)
    if special is None or \
            (_core.perm_for_conn(conn, special) & (P_WRITE | P_OWNER)) != (P_WRITE | P_OWNER):
        raise RequestFailed(store.errno)
    store.special_perms[name] = perms
    out.ack(Op.SET_PERMS)


# Ending a domain.

# xenstored_domain.c: destroy_domain()
def destroy_domain(store: "Store", out: Outcome, domain: Domain) -> None:
    """Release *domain*: close its ring connection, remove the nodes it
    owns, forget it, and fire ``@releaseDomain``."""
    conn = domain.conn
    assert conn is not None  # Only connected domains are destroyed.
    _core.forget_connection(store, conn)
    out.closed.append(conn)
    domain.conn = None
    if domain.node_count > 0:
        # xenstored_domain.c: domain_tree_remove_sub()
        def remove_owned(_conn: Optional[Connection], node: Node) -> _core.Visit:
            if node.perms[0][0] != domain.domid:
                return _core.Visit.CONTINUE
            try:
                _core.rm_node(store, out, None, node.name)
            except RequestFailed:
                pass  # As the daemon does, go on with the others.
            return _core.Visit.SKIP_CHILDREN if domain.node_count > 0 else _core.Visit.STOP
        try:
            _core.walk(store, None, b"/", enter=remove_owned)
        except _core.WalkAborted:
            pass  # The daemon logs it and goes on.
    _forget_domain(store, domain)
    _watch.fire_watches(store, out, None, b"@releaseDomain", None, exact=True)


# xenstored_domain.c: remove_domid_from_perm(), and the list_del() of
# destroy_domain()
def _forget_domain(store: "Store", domain: Domain) -> None:
    """Forget *domain*: it leaves the domain list and the special nodes'
    permissions (an owner entry passes to domain 0)."""
    for perms in store.special_perms.values():
        if perms[0][0] == domain.domid:
            perms[0][0] = 0
        perms[1:] = [p for p in perms[1:] if p[0] != domain.domid]
    del store.domains[domain.domid]


# Requests.

# xenstored_domain.c: do_introduce()
def op_introduce(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    args = split_strings(payload)
    if len(args) < 3:
        raise RequestFailed(errno.EINVAL)
    domid = u32(atoi(args[0]))
    if u32(atoi(args[2])) == 0:
        raise RequestFailed(errno.EINVAL)
    fresh = domid not in store.domains
    domain = find_or_alloc_domain(store, domid)
    if not domain.introduced:
        # The daemon cannot map the new domain's ring page without a
        # hypervisor: the grant mapping fails with ENOSYS, and a domain
        # record made for the occasion is thrown away again.
        store.errno = errno.ENOSYS
        if fresh:
            _forget_domain(store, domain)
        raise RequestFailed(errno.ENOSYS)
    if domain.conn is not None:
        # xenstored_domain.c: domain_conn_reset()
        _watch.delete_all_watches(domain.conn)
        _transaction.delete_all_transactions(domain.conn)
        out.reset.append(domain.conn)
    out.ack(Op.INTRODUCE)


# xenstored_domain.c: do_release()
def op_release(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    destroy_domain(store, out, _onearg_domain(store, payload))
    out.ack(Op.RELEASE)


# xenstored_domain.c: do_resume()
def op_resume(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    # The daemon clears the domain's shutdown flag, which only a
    # hypervisor sets: here there is nothing to clear.
    _onearg_domain(store, payload)
    out.ack(Op.RESUME)


# xenstored_domain.c: do_set_target()
def op_set_target(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    args = split_strings(payload)
    if len(args) < 2:
        raise RequestFailed(errno.EINVAL)
    domain = _connected_domain(store, u32(atoi(args[0])))
    target = _connected_domain(store, u32(atoi(args[1])))
    assert domain.conn is not None  # A connected domain has one.
    domain.conn.target = target.conn
    out.ack(Op.SET_TARGET)


# xenstored_domain.c: do_get_domain_path()
def op_get_domain_path(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    arg = onearg(payload)
    if arg is None:
        raise RequestFailed(errno.EINVAL)
    out.reply(Op.GET_DOMAIN_PATH, b"/local/domain/%d\0" % u32(atoi(arg)))


# xenstored_domain.c: do_is_domain_introduced()
def op_is_domain_introduced(store: "Store", out: Outcome, conn: Connection,
                            payload: bytes) -> None:
    arg = onearg(payload)
    if arg is None:
        raise RequestFailed(errno.EINVAL)
    domid = u32(atoi(arg))
    known = domid == _DOMID_SELF or _introduced(store, domid) is not None
    out.reply(Op.IS_DOMAIN_INTRODUCED, b"T\0" if known else b"F\0")


# xenstored_domain.c: do_reset_watches()
def op_reset_watches(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    if conn.transaction is not None:
        # Sent with a live transaction id, this request trips an
        # assertion in xenstored (Debian 12's 4.17.5+72): no answer, and
        # the daemon is gone.
        return
    _watch.delete_all_watches(conn)
    _transaction.delete_all_transactions(conn)
    out.ack(Op.RESET_WATCHES)
