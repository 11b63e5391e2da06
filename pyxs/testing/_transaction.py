"""Transactions: copy-on-access isolation and the commit
(xenstored_transaction.c).

Theory of operation.  A transaction does not copy the tree when it
starts; it copies nodes one at a time, the first time it touches each:

* Every request in a transaction goes through :func:`access_node` for
  each node it reads, writes or deletes.  The first access to a node
  records it in :attr:`Transaction.accessed <._model.Transaction.accessed>`
  (in order), counting against the transaction-nodes quota.  A first
  *read* also notes the node's generation then (``check_generation``)
  and, if the node exists, puts a private copy of it in
  :attr:`Transaction.copies <._model.Transaction.copies>`.  A read of a
  missing node is recorded too, with no copy: its absence is what the
  transaction saw.
* From then on the transaction reads and writes its copies only
  (:func:`._core.read_node` looks in ``copies`` for any node in
  ``accessed``), so it is isolated from later changes by others; but a
  node another client changed *before* the transaction first touched it
  is seen in its new state.
* Writes and deletions happen to the copies (``has_copy`` says whether a
  copy is to be committed); watches do not fire yet but are noted on
  the accessed record, and node-count changes per domain are kept in
  ``changed_domains``.
* At commit (:func:`_finalize`), if any node read has a generation other
  than the one noted, the commit fails with ``EAGAIN`` and nothing
  changes.  Otherwise each copy replaces the node in the tree (with a
  new generation), deleted nodes leave it, the noted watches fire and the
  domains' node counts move.  A transaction that failed on the way (a
  quota, say) fails at commit with ``ENOMEM``.
* Whatever its outcome, ``TRANSACTION_END`` ends the transaction.
"""

import errno
from typing import TYPE_CHECKING, Dict, Optional

from .._cnumbers import u32
from .._internal import Op
from . import _domain, _watch
from ._model import NO_GENERATION, Access, Accessed, Connection, Node, Transaction, onearg
from ._outcome import Outcome, RequestFailed

if TYPE_CHECKING:
    from ._store import Store


# xenstored_transaction.c: access_node()
def access_node(store: "Store", conn: Optional[Connection], node: Node,
                access: Access) -> Optional[Dict[bytes, Node]]:
    """Note an access to *node*: a change gives it a new generation, and
    *conn*'s transaction, if any, records the node (and copies it on a
    first read).

    :returns: the table the node lives in for *conn*: the tree, or the
        transaction's copies; None for a deletion of a node the
        transaction never saw, of which it has nothing to delete.
    :raises RequestFailed: ENOSPC (errno set, the transaction failed) if
        the access is over an unprivileged transaction's node quota.
    """
    if access is not Access.READ:
        store.generation += 1
        node.generation = store.generation
    trans = conn.transaction if conn is not None else None
    if trans is None:
        return store.nodes
    assert conn is not None  # A transaction comes with its connection.
    accessed = trans.accessed.get(node.name)
    first = accessed is None
    if accessed is None:
        if trans.nodes >= store.quotas["transaction-nodes"] and not conn.privileged:
            trans.fail = True
            store.errno = errno.ENOSPC
            raise RequestFailed(errno.ENOSPC)
        accessed = Accessed()
        if node.generation != NO_GENERATION and node.perms:
            accessed.perms = [list(p) for p in node.perms]
        if access is Access.READ:
            accessed.generation = node.generation
            accessed.check_generation = True
            if node.generation != NO_GENERATION:
                _domain.adjust_perms(store, node)
                trans.copies[node.name] = node.copy()
                accessed.has_copy = True
        trans.nodes += 1
        trans.accessed[node.name] = accessed
    if access is not Access.READ:
        accessed.modified = True
    if first and access is Access.DELETE:
        return None
    if access is Access.WRITE:
        accessed.has_copy = True
    elif access is Access.DELETE:
        accessed.has_copy = False
    return trans.copies


# xenstored_transaction.c: conn_delete_all_transactions()
def delete_all_transactions(conn: Connection) -> None:
    conn.transactions.clear()
    conn.transaction = None


# Requests.

# xenstored_transaction.c: do_transaction_start()
def op_transaction_start(store: "Store", out: Outcome, conn: Connection,
                         payload: bytes) -> None:
    if conn.transaction is not None:
        raise RequestFailed(errno.EBUSY)
    if not conn.privileged and len(conn.transactions) > store.quotas["transactions"]:
        raise RequestFailed(errno.ENOSPC)
    store.generation += 1
    generation = store.generation
    while True:
        tx_id = conn.next_transaction_id
        conn.next_transaction_id = u32(tx_id + 1)
        if tx_id != 0 and tx_id not in conn.transactions:
            break
    conn.transactions[tx_id] = Transaction(tx_id, generation)
    out.reply(Op.TRANSACTION_START, b"%d\0" % tx_id)


# xenstored_transaction.c: transaction_fix_domains()
def _check_domain_quotas(store: "Store", trans: Transaction, *, quota_check: bool) -> None:
    """Make sure every domain whose node count the commit changes exists
    and, if *quota_check*, stays under the nodes quota.

    :raises RequestFailed: ENOSPC for a domain over the quota.
    """
    for domid, delta in trans.changed_domains.items():
        domain = _domain.find_or_alloc_domain(store, domid)
        count = max(domain.node_count + delta, 0)
        if domid == 0:
            count = 0
        if quota_check and count >= store.quotas["nodes"]:
            raise RequestFailed(errno.ENOSPC)


# xenstored_transaction.c: transaction_fix_domains()
def _apply_domain_counts(store: "Store", trans: Transaction) -> None:
    """Move the domains' node counts by what the commit changed."""
    for domid, delta in trans.changed_domains.items():
        store.domains[domid].node_count += delta


# xenstored_transaction.c: do_transaction_end()
def op_transaction_end(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    arg = onearg(payload)
    if arg not in (b"T", b"F"):
        raise RequestFailed(errno.EINVAL)
    trans = conn.transaction
    if trans is None:
        raise RequestFailed(errno.ENOENT)
    conn.transaction = None
    # The transaction ends here, whatever the outcome.
    del conn.transactions[trans.id]
    if arg == b"T":
        if trans.fail:
            raise RequestFailed(errno.ENOMEM)
        _check_domain_quotas(store, trans,
                             quota_check=trans.node_created and not conn.privileged)
        _finalize(store, out, conn, trans)
        _apply_domain_counts(store, trans)
    out.ack(Op.TRANSACTION_END)


# xenstored_transaction.c: finalize_transaction()
def _finalize(store: "Store", out: Outcome, conn: Connection, trans: Transaction) -> None:
    """Commit *trans* into the tree and fire its watches.

    :raises RequestFailed: EAGAIN, changing nothing, if a node it read
        has changed since.
    """
    for name, accessed in list(trans.accessed.items()):
        if accessed.check_generation:
            current = store.nodes.get(name)
            generation = current.generation if current is not None else NO_GENERATION
            if accessed.generation != generation:
                raise RequestFailed(errno.EAGAIN)
        if not accessed.modified:
            if accessed.has_copy:
                trans.copies.pop(name, None)
            del trans.accessed[name]
    for name, accessed in list(trans.accessed.items()):
        if accessed.has_copy:
            node = trans.copies.pop(name, None)
            if node is not None:
                store.generation += 1
                node.generation = store.generation
                store.nodes[name] = node
        elif accessed.generation != NO_GENERATION:
            store.nodes.pop(name, None)
        if accessed.fire_watch:
            _watch.fire_watches(store, out, conn, name, None, exact=accessed.watch_exact,
                                perms=accessed.perms)
        del trans.accessed[name]
