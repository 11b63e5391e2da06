"""The XenStore daemon's state and request handling, with no I/O.

This is a model of Xen 4.17's C ``xenstored`` written from its documented
and observed behaviour: the node tree, connections, watches,
transactions, permissions and quotas, and the exact answers the daemon
gives, including its less obvious ones:

* A transaction does not copy the tree when it starts: it copies each
  node the first time it touches it, and the commit fails with
  ``EAGAIN`` when any node it read has changed since (see
  :mod:`._transaction`).
* Every write stamps the node with a global generation counter;
  ``DIRECTORY_PART`` shows that number, and this model keeps the counter
  in step with the daemon's.
* Some malformed requests are answered with whatever the daemon's C
  ``errno`` happened to hold (a one-argument request whose argument is
  not exactly one NUL-terminated string, for instance).  The model keeps
  the same variable, :attr:`Store.errno`, updated at the same points.
  When it holds 0 the real daemon sends no answer at all and aborts on
  an assertion; the model fails just that connection instead (see
  :attr:`Outcome.failed <._outcome.Outcome.failed>`).

The model is split the way the daemon's sources are, so that each piece
can be read next to the C it mirrors: :mod:`._core` (the tree and the
requests on nodes), :mod:`._transaction`, :mod:`._watch`,
:mod:`._domain` and :mod:`._control`, over the records of
:mod:`._model`.  This module holds the :class:`Store` itself: its
connections and the dispatch of requests.

Every call into the store returns an :class:`~._outcome.Outcome`: the
packets to send and the connections the call ended.  Whoever serves the
connections (:mod:`._server`) keeps the packets not yet written, and
applies :func:`~._outcome.duplicate_event` to them as it queues more.
"""

import errno
from collections import OrderedDict
from typing import Callable, Dict, List, Tuple

from .._cnumbers import PERM_LETTERS, signed
from .._internal import Op, Packet
from . import _control, _core, _domain, _transaction, _watch
from ._model import (
    DEFAULT_QUOTAS, NO_GENERATION, P_IGNORE, P_NONE, Connection, Domain, Node, Perms)
from ._outcome import Outcome, RequestFailed

__all__ = ["Store", "Connection", "Outcome", "DEFAULT_QUOTAS", "NO_GENERATION"]

Handler = Callable[["Store", Outcome, Connection, bytes], None]

#: The request handlers by message type (xenstored_core.c: ``wire_funcs``).
HANDLERS: Dict[int, Handler] = {
    Op.DEBUG: _control.op_control,
    Op.DIRECTORY: _core.op_directory,
    Op.READ: _core.op_read,
    Op.GET_PERMS: _core.op_get_perms,
    Op.WATCH: _watch.op_watch,
    Op.UNWATCH: _watch.op_unwatch,
    Op.TRANSACTION_START: _transaction.op_transaction_start,
    Op.TRANSACTION_END: _transaction.op_transaction_end,
    Op.INTRODUCE: _domain.op_introduce,
    Op.RELEASE: _domain.op_release,
    Op.GET_DOMAIN_PATH: _domain.op_get_domain_path,
    Op.WRITE: _core.op_write,
    Op.MKDIR: _core.op_mkdir,
    Op.RM: _core.op_rm,
    Op.SET_PERMS: _core.op_set_perms,
    Op.IS_DOMAIN_INTRODUCED: _domain.op_is_domain_introduced,
    Op.RESUME: _domain.op_resume,
    Op.SET_TARGET: _domain.op_set_target,
    Op.RESET_WATCHES: _domain.op_reset_watches,
    Op.DIRECTORY_PART: _core.op_directory_part,
}

# The types only domain 0 may send (C: XS_FLAG_PRIV), and those that
# ignore the transaction id (C: XS_FLAG_NOTID).
_PRIVILEGED_OPS = frozenset([Op.DEBUG, Op.INTRODUCE, Op.RELEASE,
                             Op.IS_DOMAIN_INTRODUCED, Op.RESUME, Op.SET_TARGET])
_NO_TX_OPS = frozenset([Op.WATCH, Op.UNWATCH])


class Store:
    """The whole state of one emulated XenStore daemon.

    A fresh store holds what a freshly started C xenstored holds: ``/``,
    ``/tool`` and ``/tool/xenstored``, all empty and with permissions
    ``n0``.  Feed it requests with :meth:`handle`; it answers with the
    packets to send, to the requesting connection and to any other.

    The store is not thread-safe: call it from one thread at a time.
    """

    def __init__(self) -> None:
        #: The daemon's C ``errno``, which some answers leak (see the module
        #: documentation).  A freshly started daemon holds ENOENT.
        self.errno = errno.ENOENT
        #: The global generation counter.
        self.generation = 0
        self.quotas = dict(DEFAULT_QUOTAS)
        self.soft_quotas = {"memory": 2 * 1024 * 1024}
        # The model's state, for the modules of this package.
        #: The committed tree, by path.
        self.nodes: Dict[bytes, Node] = {}
        #: The connections the store serves.
        self.connections: List[Connection] = []
        #: The known domains, the newest first.
        self.domains: "OrderedDict[int, Domain]" = OrderedDict()
        #: The permissions of the special nodes watches may name.
        self.special_perms: Dict[bytes, Perms] = {
            b"@releaseDomain": [[0, P_NONE]],
            b"@introduceDomain": [[0, P_NONE]],
        }
        # xenstored_domain.c: dom0_init() makes domain 0 and its ring
        # connection before xenstored_core.c: setup_structure() makes the
        # tree.
        dom0 = _domain.alloc_domain(self, 0)
        dom0.introduced = True
        dom0.conn = Connection(0, dom0)
        self.connections.append(dom0.conn)
        for name, child in ((b"/", b"tool"), (b"/tool", b"xenstored"),
                            (b"/tool/xenstored", None)):
            node = Node(name, perms=[[0, P_NONE]], children=[child] if child else [])
            _core.write_node(self, None, node)
        dom0.node_count += 3

    # Connections.

    def connect(self, domid: int = 0, *, socket: bool = True) -> Connection:
        """Open a connection.

        :param domid: the domain the connection speaks for.
        :param socket: True for a Unix-socket connection (always domain
            0, privileged).  False for a XenBus ring connection of domain
            *domid*: domain 0's is privileged, any other domain's is not;
            the domain counts as introduced while the connection lives.
        :raises ValueError: if *domid* already has a live ring connection.
        """
        if socket or domid == 0:
            conn = Connection(0 if socket else domid, None)
        else:
            domain = self.domains.get(domid)
            if domain is not None and domain.introduced:
                raise ValueError("domain %d is already connected" % domid)
            if domain is None:
                domain = _domain.alloc_domain(self, domid)
            domain.introduced = True
            conn = Connection(domid, domain)
            domain.conn = conn
        self.connections.append(conn)
        return conn

    def close(self, conn: Connection) -> Outcome:
        """Close a connection whose client went away: its watches go, its
        transactions are abandoned.  For a domain's ring connection the
        domain is released as with ``RELEASE``, which may fire watches.
        Closing a closed connection does nothing."""
        out = Outcome()
        if not conn.closed:
            if conn.domain is not None and conn.domain.domid != 0:
                _domain.destroy_domain(self, out, conn.domain)
            else:
                _core.forget_connection(self, conn)
        return out

    # xenstored_domain.c: ignore_connection()
    def abandon(self, conn: Connection) -> None:
        """Stop serving a ring connection but keep it, as the daemon does
        with one that broke the protocol (a frame over the size limit,
        say): its watches and transactions go, and it is marked
        :attr:`~._model.Connection.broken`.  Abandoning a closed
        connection does nothing."""
        if conn.closed:
            return
        _watch.delete_all_watches(conn)
        _transaction.delete_all_transactions(conn)
        conn.broken = True

    def fail(self, conn: Connection) -> None:
        """Answer *conn* no more: the daemon would have crashed on its
        last request (or the store itself failed on it)."""
        conn.broken = True

    # Requests.

    def handle(self, conn: Connection, packet: Packet) -> Outcome:
        """Process one request and return its outcome: the packets to
        send, in order, each with the connection it is for (the reply to
        *conn* and any watch events, to *conn* or to others), and the
        connections the request ended.  A request on a failed or closed
        connection changes nothing and sends nothing."""
        return self.handle_raw(conn, int(packet.op), packet.rq_id, packet.tx_id,
                               packet.payload)

    def handle_raw(self, conn: Connection, op: int, rq_id: int, tx_id: int,
                   payload: bytes) -> Outcome:
        """Like :meth:`handle`, for a request given by its header fields,
        so that message types :class:`~pyxs._internal.Op` does not know can
        be answered too (with ``ENOSYS``, as the daemon does)."""
        out = Outcome(conn, rq_id, tx_id)
        if conn.closed or conn.broken:
            return out
        try:
            self._process(out, conn, op, tx_id, payload)
        finally:
            conn.transaction = None
        if not out.replied:
            # The real daemon sends nothing and then dies on an assertion.
            self.fail(conn)
            out.failed.append(conn)
        return out

    # xenstored_core.c: process_message()
    def _process(self, out: Outcome, conn: Connection, op: int, tx_id: int,
                 payload: bytes) -> None:
        handler = HANDLERS.get(op)
        if handler is None:
            out.error(errno.ENOSYS)
            return
        if op in _PRIVILEGED_OPS and not conn.privileged:
            out.error(errno.EACCES)
            return
        if op in _NO_TX_OPS or tx_id == 0:
            trans = None
        else:
            trans = conn.transactions.get(tx_id)
            if trans is None:
                out.error(errno.ENOENT)
                return
        conn.transaction = trans
        try:
            handler(self, out, conn, payload)
        except RequestFailed as failure:
            # A handler failing with errno 0 leaves the request unanswered.
            if failure.code:
                out.error(failure.code)

    # Inspection, for tests.

    def dump(self) -> Dict[str, Tuple[bytes, List[str]]]:
        """The committed tree: ``{path: (value, permissions)}``, paths and
        permissions as str."""
        result = {}
        for name, node in sorted(self.nodes.items()):
            result[name.decode("latin-1")] = (node.data, [
                "%s%d" % (PERM_LETTERS.get(bits & ~P_IGNORE, b"n").decode(),
                          signed(domid, 32)) for domid, bits in node.perms])
        return result
