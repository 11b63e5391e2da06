"""The XenStore daemon's state and request handling, with no I/O.

This is a model of Xen 4.17's C ``xenstored`` written from its documented
and observed behaviour: the node tree, connections, watches,
transactions, permissions and quotas, and the exact answers the daemon
gives, including its less obvious ones:

* A transaction does not copy the tree when it starts.  Each node is
  copied the first time the transaction touches it (reads of missing
  nodes included), and the commit fails with ``EAGAIN`` when any node it
  read has changed since.  A node changed by someone else *before* the
  transaction first looked at it is therefore seen in its new state.
* Every write stamps the node with a global generation counter;
  ``DIRECTORY_PART`` shows that number, and this model keeps the counter
  in step with the daemon's.
* Some malformed requests are answered with whatever the daemon's C
  ``errno`` happened to hold (a one-argument request whose argument is
  not exactly one NUL-terminated string, for instance).  The model keeps
  the same variable, :attr:`Store.errno`, updated at the same points.
  When it holds 0 the real daemon sends no answer at all and aborts on
  an assertion; the model marks the connection as broken instead (see
  :attr:`Connection.broken`), and the server drops just that connection.

Paths, values and tokens are handled as bytes throughout, like the C
strings they are in the daemon.
"""

import errno as _e
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union, overload

from .._cnumbers import C_SPACE, parse_perm, signed, strtol
from .._internal import PAYLOAD_MAX, WIRE_ERRORS, Op, Packet

__all__ = ["Store", "Connection", "DEFAULT_QUOTAS", "NO_GENERATION"]

#: Generation of a node that does not exist.
NO_GENERATION = (1 << 64) - 1

#: The default hard quotas of C xenstored 4.17 (``CONTROL quota`` names).
DEFAULT_QUOTAS = {
    "nodes": 1000,
    "watches": 128,
    "transactions": 10,
    "outstanding": 20,
    "transaction-nodes": 1024,
    "memory": 2 * 1024 * 1024 + 512 * 1024,
    "node-size": 2048,
    "path-max": 2048,
    "permissions": 5,
}
_QUOTA_TEXT = [
    ("nodes", "Nodes per domain"),
    ("watches", "Watches per domain"),
    ("transactions", "Transactions per domain"),
    ("outstanding", "Outstanding requests per domain"),
    ("transaction-nodes", "Max. number of accessed nodes per transaction"),
    ("memory", "Total Xenstore memory per domain (error level)"),
    ("node-size", "Max. size of a node"),
    ("path-max", "Max. length of a node path"),
    ("permissions", "Max. number of permissions per node"),
]
_SOFT_QUOTA_TEXT = [("memory", "Total Xenstore memory per domain (warning level)")]

# Permission bits, as the daemon keeps them.
P_NONE = 0x00
P_READ = 0x01
P_WRITE = 0x02
P_OWNER = 0x08
P_IGNORE = 0x10
_P_ALL = P_READ | P_WRITE | P_OWNER
_PERM_LETTERS = {P_NONE: b"n", P_READ: b"r", P_WRITE: b"w", P_READ | P_WRITE: b"b"}

# What a node access is for (transactions record reads and changes apart).
_READ, _WRITE, _DELETE = 0, 1, 2

# Results of the tree-walk callbacks.
_WALK_SUCCESS_STOP = -100
_WALK_ERROR_STOP = -1
_WALK_OK = 0
_WALK_SKIP_CHILDREN = 1
_WALK_RM_CHILDENTRY = 2

# Size of the daemon's per-node record header, and of one permission entry:
# the node-size quota counts them along with the value and the child list.
_RECORD_HEADER = 24
_RECORD_PERM = 8

_WIRE_ERRNOS = frozenset(WIRE_ERRORS.values())
_DOMID_SELF = 0x7FF0
_VALID_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/_@")
_LOCAL_DOMAIN = b"/local/domain/"


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _atoi(text: bytes) -> int:
    """C ``atoi`` (an ``int``, so truncated to 32 bits)."""
    return signed(strtol(text, 10)[0], 32)


def _local_offset(name: bytes) -> int:
    """Length of a leading ``/local/domain/<n>/``, the part the path length
    limit does not count (the daemon matches it with ``%5u``, sign and all)."""
    if not name.startswith(_LOCAL_DOMAIN):
        return 0
    i = len(_LOCAL_DOMAIN)
    while i < len(name) and name[i] in C_SPACE:
        i += 1
    j = i
    if j < len(name) and name[j] in b"+-":
        j += 1
    first_digit = j
    while j < len(name) and j - i < 5 and 48 <= name[j] <= 57:
        j += 1
    if j == first_digit or name[j:j + 1] != b"/":
        return 0
    return j + 1


def _get_parent(name: bytes) -> bytes:
    slash = name.rfind(b"/", 1)
    return name[:slash] if slash > 0 else b"/"


def _basename(name: bytes) -> bytes:
    return name[name.rfind(b"/") + 1:]


def _child_name(parent: bytes, child: bytes) -> bytes:
    return parent + b"/" + child if parent != b"/" else b"/" + child


def _is_child(child: bytes, parent: bytes) -> bool:
    if parent == b"/":
        return True
    if not child.startswith(parent):
        return False
    return len(child) == len(parent) or child[len(parent)] == 0x2F


def _strings(payload: bytes) -> List[bytes]:
    """The NUL-terminated strings of a payload (bytes after the last NUL
    are not a string)."""
    return payload.split(b"\0")[:-1]


def _onearg(payload: bytes) -> Optional[bytes]:
    """The argument of a one-argument request, or None unless the payload
    is exactly one string and its NUL."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1]


class _Node:
    """One node, as a request handler holds it (a private copy)."""

    __slots__ = ("name", "generation", "perms", "data", "children",
                 "parent", "childoff")

    def __init__(self, name: bytes, generation: int = NO_GENERATION,
                 perms: Optional[List[List[int]]] = None, data: bytes = b"",
                 children: Optional[List[bytes]] = None) -> None:
        self.name = name
        self.generation = generation
        self.perms = perms if perms is not None else []
        self.data = data
        self.children = children if children is not None else []
        self.parent = None  # type: Optional[_Node]
        self.childoff = 0

    def copy(self) -> "_Node":
        return _Node(self.name, self.generation, [list(p) for p in self.perms],
                     self.data, list(self.children))

    @property
    def childlen(self) -> int:
        return sum(len(c) + 1 for c in self.children)

    def children_bytes(self) -> bytes:
        return b"".join(c + b"\0" for c in self.children)


class _Accessed:
    """A node a transaction has touched."""

    __slots__ = ("generation", "perms", "check_gen", "modified", "ta_node",
                 "fire_watch", "watch_exact")

    def __init__(self) -> None:
        self.generation = 0
        self.perms = None  # type: Optional[List[List[int]]]
        self.check_gen = False
        self.modified = False
        self.ta_node = False
        self.fire_watch = False
        self.watch_exact = False


class _Transaction:
    __slots__ = ("id", "generation", "accessed", "copies", "nodes",
                 "changed_domains", "node_created", "fail")

    def __init__(self, tx_id: int, generation: int) -> None:
        self.id = tx_id
        self.generation = generation
        self.accessed = OrderedDict()  # type: Dict[bytes, _Accessed]
        self.copies = {}  # type: Dict[bytes, _Node]
        self.nodes = 0
        self.changed_domains = OrderedDict()  # type: Dict[int, int]
        self.node_created = False
        self.fail = False


class _Watch:
    __slots__ = ("node", "token", "relative_path")

    def __init__(self, node: bytes, token: bytes, relative_path: Optional[bytes]) -> None:
        self.node = node
        self.token = token
        self.relative_path = relative_path


class _Domain:
    __slots__ = ("domid", "generation", "introduced", "nbentry", "nbwatch",
                 "conn", "path")

    def __init__(self, domid: int, generation: int) -> None:
        self.domid = domid
        self.generation = generation
        self.introduced = False
        self.nbentry = 0
        self.nbwatch = 0
        self.conn = None  # type: Optional[Connection]
        self.path = b"/local/domain/%d" % domid


class Connection:
    """One client's conversation with the store.

    Create connections with :meth:`Store.connect`.  A Unix-socket
    connection acts as domain 0 with full privileges; a connection for
    another domain id is that domain's XenBus ring: unprivileged, with its
    home at ``/local/domain/<domid>`` and subject to quotas.

    :ivar domid: the domain the connection speaks for.
    :ivar broken: set when the real daemon would have crashed or dropped
        the connection here; whoever serves it should close it.
    :ivar closed: set once the store has forgotten the connection (it
        was disconnected, or its domain was released).
    :ivar queued: packets the server has queued but not yet written; the
        store consults it so as not to queue an identical watch event
        twice, as the daemon does.  Maintained by the server.
    """

    def __init__(self, store: "Store", domid: int, domain: Optional[_Domain]) -> None:
        self.store = store
        self.domid = domid
        self.domain = domain
        self.watches = []  # type: List[_Watch]
        self.transactions = OrderedDict()  # type: Dict[int, _Transaction]
        self.transaction = None  # type: Optional[_Transaction]
        self.next_transaction_id = 0
        self.target = None  # type: Optional[Connection]
        self.broken = False
        self.closed = False
        self.queued = []  # type: List[Packet]

    @property
    def privileged(self) -> bool:
        """Whether the connection bypasses permissions and quotas."""
        return not self._unprivileged()

    def _unprivileged(self) -> bool:
        return self.domain is not None and self.domain.domid != 0

    @property
    def home(self) -> bytes:
        """Where relative paths are resolved: ``/local/domain/<domid>``."""
        return self.domain.path if self.domain is not None else b"/local/domain/0"

    def __repr__(self) -> str:
        return "<Connection domid=%d%s>" % (self.domid, " closed" if self.closed else "")


Output = List[Tuple[Connection, Packet]]


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
        self.errno = _e.ENOENT
        #: The global generation counter.
        self.generation = 0
        self.quotas = dict(DEFAULT_QUOTAS)
        self.soft_quotas = {"memory": 2 * 1024 * 1024}
        self._db = {}  # type: Dict[bytes, _Node]
        self._conns = []  # type: List[Connection]
        self._domains = OrderedDict()  # type: OrderedDict[int, _Domain]
        self._special = {
            b"@releaseDomain": [[0, P_NONE]],
            b"@introduceDomain": [[0, P_NONE]],
        }
        self._out = []  # type: Output
        self._replied = False
        self._request = (0, 0)
        # Domain 0 and its own ring connection, as the daemon sets them up
        # before it creates the tree.
        dom0 = self._alloc_domain(0)
        dom0.introduced = True
        dom0.conn = Connection(self, 0, dom0)
        self._conns.append(dom0.conn)
        for name, child in ((b"/", b"tool"), (b"/tool", b"xenstored"),
                            (b"/tool/xenstored", None)):
            node = _Node(name, perms=[[0, P_NONE]],
                         children=[child] if child else [])
            self._write_node(None, node, False)
        dom0.nbentry += 3
        self._handlers = {
            Op.DEBUG: self._do_control,
            Op.DIRECTORY: self._do_directory,
            Op.READ: self._do_read,
            Op.GET_PERMS: self._do_get_perms,
            Op.WATCH: self._do_watch,
            Op.UNWATCH: self._do_unwatch,
            Op.TRANSACTION_START: self._do_transaction_start,
            Op.TRANSACTION_END: self._do_transaction_end,
            Op.INTRODUCE: self._do_introduce,
            Op.RELEASE: self._do_release,
            Op.GET_DOMAIN_PATH: self._do_get_domain_path,
            Op.WRITE: self._do_write,
            Op.MKDIR: self._do_mkdir,
            Op.RM: self._do_rm,
            Op.SET_PERMS: self._do_set_perms,
            Op.IS_DOMAIN_INTRODUCED: self._do_is_domain_introduced,
            Op.RESUME: self._do_resume,
            Op.SET_TARGET: self._do_set_target,
            Op.RESET_WATCHES: self._do_reset_watches,
            Op.DIRECTORY_PART: self._do_directory_part,
        }  # type: Dict[int, Callable[[Connection, bytes], int]]

    # ------------------------------------------------------------------
    # Connections

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
            conn = Connection(self, 0 if socket else domid, None)
        else:
            domain = self._domains.get(domid)
            if domain is not None and domain.introduced:
                raise ValueError("domain %d is already connected" % domid)
            if domain is None:
                domain = self._alloc_domain(domid)
            domain.introduced = True
            conn = Connection(self, domid, domain)
            domain.conn = conn
        self._conns.append(conn)
        return conn

    def disconnect(self, conn: Connection) -> Output:
        """Forget a connection whose client went away: its watches go,
        its transactions are abandoned.  For a domain's ring connection
        the domain is released as with ``RELEASE``, which may fire
        watches; the packets to send are returned."""
        self._out = []
        if not conn.closed:
            if conn.domain is not None and conn.domain.domid != 0:
                self._destroy_domain_conn(conn.domain)
            else:
                self._drop_conn(conn)
        out, self._out = self._out, []
        return out

    def ignore(self, conn: Connection) -> None:
        """Stop serving a ring connection that broke the protocol (a frame
        over the size limit, say): its watches and transactions go, and it
        is marked :attr:`~Connection.broken`, as the daemon does."""
        self._delete_all_watches(conn)
        self._delete_all_transactions(conn)
        conn.broken = True

    def _drop_conn(self, conn: Connection) -> None:
        self._delete_all_watches(conn)
        self._delete_all_transactions(conn)
        conn.closed = True
        if conn in self._conns:
            self._conns.remove(conn)

    # ------------------------------------------------------------------
    # Requests

    def handle(self, conn: Connection, packet: Packet) -> Output:
        """Process one request and return the packets to send, in order,
        each with the connection it is for: the reply to *conn* and any
        watch events, to *conn* or to others."""
        return self.handle_raw(conn, int(packet.op), packet.rq_id, packet.tx_id,
                               packet.payload)

    def handle_raw(self, conn: Connection, op: int, rq_id: int, tx_id: int,
                   payload: bytes) -> Output:
        """Like :meth:`handle`, for a request given by its header fields,
        so that message types :class:`~pyxs._internal.Op` does not know can
        be answered too (with ``ENOSYS``, as the daemon does)."""
        if conn.closed or conn.broken:
            return []
        self._out = []
        self._replied = False
        self._request = (rq_id, tx_id)
        try:
            self._process(conn, op, tx_id, payload)
        finally:
            conn.transaction = None
        if not self._replied:
            # The real daemon sends nothing and then dies on an assertion.
            conn.broken = True
        out, self._out = self._out, []
        return out

    _PRIVILEGED_OPS = frozenset([Op.DEBUG, Op.INTRODUCE, Op.RELEASE,
                                 Op.IS_DOMAIN_INTRODUCED, Op.RESUME, Op.SET_TARGET])
    _NO_TX_OPS = frozenset([Op.WATCH, Op.UNWATCH])

    def _process(self, conn: Connection, op: int, tx_id: int, payload: bytes) -> None:
        handler = self._handlers.get(op)
        if handler is None:
            self._send_error(conn, _e.ENOSYS)
            return
        if op in self._PRIVILEGED_OPS and conn._unprivileged():
            self._send_error(conn, _e.EACCES)
            return
        if op in self._NO_TX_OPS or tx_id == 0:
            trans = None
        else:
            trans = conn.transactions.get(tx_id)
            if trans is None:
                self._send_error(conn, _e.ENOENT)
                return
        conn.transaction = trans
        ret = handler(conn, payload)
        if ret:
            self._send_error(conn, ret)

    def _reply(self, conn: Connection, op: int, payload: bytes) -> None:
        if len(payload) > PAYLOAD_MAX:
            self._send_error(conn, _e.E2BIG)
            return
        if self._replied:
            return
        rq_id, tx_id = self._request
        self._out.append((conn, Packet(op, payload, rq_id=rq_id, tx_id=tx_id)))
        self._replied = True

    def _ack(self, conn: Connection, op: int) -> None:
        self._reply(conn, op, b"OK\0")

    def _send_error(self, conn: Connection, err: int) -> None:
        # Only the protocol's names go on the wire, as in send_error().
        if err not in _WIRE_ERRNOS:
            err = _e.EINVAL
        self._reply(conn, Op.ERROR, _e.errorcode[err].encode() + b"\0")

    def _send_event(self, conn: Connection, path: bytes, token: bytes) -> None:
        payload = path + b"\0" + token + b"\0"
        if len(payload) > PAYLOAD_MAX:
            return
        if not path.startswith(b"@"):
            # An identical event still waiting to go out is not queued twice.
            for target, packet in self._out:
                if (target is conn and packet.op == Op.WATCH_EVENT
                        and packet.payload == payload):
                    return
            for packet in conn.queued:
                if packet.op == Op.WATCH_EVENT and packet.payload == payload:
                    return
        self._out.append((conn, Packet(Op.WATCH_EVENT, payload)))

    # ------------------------------------------------------------------
    # Domains and permissions

    def _alloc_domain(self, domid: int) -> _Domain:
        domain = _Domain(domid, self.generation)
        self._domains[domid] = domain
        # New domains go to the front of the daemon's list.
        self._domains.move_to_end(domid, last=False)
        return domain

    def _find_or_alloc_domain(self, domid: int) -> _Domain:
        # Without a hypervisor every domain id counts as existing, as with
        # the real daemon run on a stand-in for one.
        domain = self._domains.get(domid)
        return domain if domain is not None else self._alloc_domain(domid)

    def _introduced(self, domid: int) -> Optional[_Domain]:
        domain = self._domains.get(domid)
        return domain if domain is not None and domain.introduced else None

    def _adjust_perms(self, node: _Node) -> None:
        # Entries for domains younger than the node (their id was reused)
        # no longer count.
        for entry in node.perms[1:]:
            if entry[1] & P_IGNORE:
                continue
            domain = self._domains.get(entry[0])
            if domain is None or domain.generation > node.generation:
                entry[1] |= P_IGNORE

    @staticmethod
    def _perm_for_conn(conn: Connection, perms: List[List[int]]) -> int:
        target = conn.target.domid if conn.target is not None else None
        if not conn._unprivileged() or perms[0][0] == conn.domid or perms[0][0] == target:
            return _P_ALL
        for domid, bits in perms[1:]:
            if not bits & P_IGNORE and (domid == conn.domid or domid == target):
                return bits & _P_ALL
        return perms[0][1] & _P_ALL

    def _domain_entry(self, conn: Optional[Connection]) -> int:
        if conn is not None and conn.domain is not None and conn._unprivileged():
            return conn.domain.nbentry
        return 0

    def _entry_change(self, conn: Optional[Connection], node: _Node, delta: int) -> None:
        if not node.perms:
            return
        domid = node.perms[0][0]
        if conn is not None and conn.transaction is not None:
            changes = conn.transaction.changed_domains
            changes[domid] = changes.get(domid, 0) + delta
            return
        domain: Optional[_Domain]
        if conn is not None and domid == conn.domid and conn.domain is not None:
            domain = conn.domain
        elif delta > 0:
            domain = self._find_or_alloc_domain(domid)
        else:
            domain = self._domains.get(domid)
            if domain is None:
                self.errno = _e.ENOENT
                return
        domain.nbentry += delta

    # ------------------------------------------------------------------
    # Nodes

    def _access_node(self, conn: Optional[Connection], node: _Node,
                     kind: int) -> Tuple[int, Optional[Dict[bytes, _Node]]]:
        """Note an access: changes take a new generation, and a transaction
        records the node (and copies it on its first read).  Return an
        error (-1: nothing to delete) and the table the node lives in."""
        if kind != _READ:
            self.generation += 1
            node.generation = self.generation
        trans = conn.transaction if conn is not None else None
        if trans is None:
            return 0, self._db
        acc = trans.accessed.get(node.name)
        introduce = False
        if acc is None:
            if trans.nodes >= self.quotas["transaction-nodes"] and conn is not None \
                    and conn._unprivileged():
                trans.fail = True
                self.errno = _e.ENOSPC
                return _e.ENOSPC, None
            acc = _Accessed()
            if node.generation != NO_GENERATION and node.perms:
                acc.perms = [list(p) for p in node.perms]
            introduce = True
            if kind == _READ:
                acc.generation = node.generation
                acc.check_gen = True
                if node.generation != NO_GENERATION:
                    self._adjust_perms(node)
                    trans.copies[node.name] = node.copy()
                    acc.ta_node = True
            trans.nodes += 1
            trans.accessed[node.name] = acc
        if kind != _READ:
            acc.modified = True
        if introduce and kind == _DELETE:
            return -1, None
        if kind == _WRITE:
            acc.ta_node = True
        elif kind == _DELETE:
            acc.ta_node = False
        return 0, trans.copies

    def _read_node(self, conn: Optional[Connection], name: bytes) -> Optional[_Node]:
        trans = conn.transaction if conn is not None else None
        if trans is not None and name in trans.accessed:
            stored = trans.copies.get(name)
        else:
            stored = self._db.get(name)
        if stored is None:
            err, _ = self._access_node(conn, _Node(name), _READ)
            self.errno = err or _e.ENOENT
            return None
        node = stored.copy()
        self._adjust_perms(node)
        if self._access_node(conn, node, _READ)[0]:
            return None
        return node

    def _write_node_raw(self, conn: Optional[Connection], table: Dict[bytes, _Node],
                        node: _Node, no_quota_check: bool) -> int:
        self._adjust_perms(node)
        size = (_RECORD_HEADER + _RECORD_PERM * len(node.perms) + len(node.data)
                + node.childlen)
        if (not no_quota_check and conn is not None and conn._unprivileged()
                and size >= self.quotas["node-size"]):
            self.errno = _e.ENOSPC
            return _e.ENOSPC
        table[node.name] = node.copy()
        return 0

    def _write_node(self, conn: Optional[Connection], node: _Node,
                    no_quota_check: bool) -> int:
        err, table = self._access_node(conn, node, _WRITE)
        if err:
            return self.errno
        assert table is not None  # Given whenever there is no error.
        ret = self._write_node_raw(conn, table, node, no_quota_check)
        if ret and conn is not None and conn.transaction is not None:
            conn.transaction.fail = True
        return ret

    def _ask_parents(self, conn: Connection, name: bytes) -> Tuple[int, int]:
        while True:
            name = _get_parent(name)
            node = self._read_node(conn, name)
            if node is not None:
                break
            if self.errno in (_e.ENOMEM, _e.ENOSPC):
                return self.errno, P_NONE
            if name == b"/":
                break
        if node is None:
            return 0, P_NONE
        return 0, self._perm_for_conn(conn, node.perms)

    def _errno_from_parents(self, conn: Connection, name: bytes, err: int,
                            perm: int) -> int:
        if err == _e.ENOMEM:
            return err
        failed, parent_perm = self._ask_parents(conn, name)
        if failed:
            return self.errno
        return err if parent_perm & perm else _e.EACCES

    def _is_valid_nodename(self, name: bytes) -> bool:
        if not name.startswith(b"/"):
            return False
        if name.endswith(b"/") and name != b"/":
            return False
        if b"//" in name:
            return False
        if len(name) > _local_offset(name) + self.quotas["path-max"]:
            return False
        return all(c in _VALID_CHARS for c in name)

    @overload
    def _canonicalize(self, conn: Connection, name: bytes) -> bytes: ...

    @overload
    def _canonicalize(self, conn: Connection, name: Optional[bytes]) -> Optional[bytes]: ...

    def _canonicalize(self, conn: Connection, name: Optional[bytes]) -> Optional[bytes]:
        if name is None or name.startswith(b"/") or name.startswith(b"@"):
            return name
        return conn.home + b"/" + name

    @overload
    def _get_node(self, conn: Connection, name: bytes,
                  perm: int) -> Tuple[Optional[_Node], bytes]: ...

    @overload
    def _get_node(self, conn: Connection, name: Optional[bytes],
                  perm: int) -> Tuple[Optional[_Node], Optional[bytes]]: ...

    def _get_node(self, conn: Connection, name: Optional[bytes],
                  perm: int) -> Tuple[Optional[_Node], Optional[bytes]]:
        """Canonicalize *name* and read the node, checking *perm*.  Return
        the node (None on failure, with :attr:`errno` set) and the
        canonical name."""
        name = self._canonicalize(conn, name)
        if name is None:
            return None, None
        if not self._is_valid_nodename(name):
            self.errno = _e.EINVAL
            return None, name
        node = self._read_node(conn, name)
        if node is not None and (self._perm_for_conn(conn, node.perms) & perm) != perm:
            self.errno = _e.EACCES
            node = None
        if node is None and self.errno not in (_e.ENOMEM, _e.ENOSPC):
            self.errno = self._errno_from_parents(conn, name, self.errno, perm)
        return node, name

    def _construct_node(self, conn: Connection, name: bytes) -> Optional[_Node]:
        names = []
        parent = None
        parentname = name
        while parent is None:
            names.append(parentname)
            parentname = _get_parent(parentname)
            parent = self._read_node(conn, parentname)
            if parent is None and (self.errno != _e.ENOENT or parentname == b"/"):
                return None
        node = None
        for newname in reversed(names):
            parent.children.append(_basename(newname))
            perms = [list(p) for p in parent.perms]
            if conn._unprivileged():
                perms[0][0] = conn.domid
            node = _Node(newname, perms=perms)
            node.parent = parent
            parent = node
        return node

    def _create_node(self, conn: Connection, name: bytes, data: bytes) -> Optional[_Node]:
        node = self._construct_node(conn, name)
        if node is None:
            return None
        if conn.transaction is not None:
            conn.transaction.node_created = True
        node.data = data
        written = []  # to undo on failure
        item: Optional[_Node] = node
        ret = 0
        while item is not None:
            if item.parent is not None and \
                    self._domain_entry(conn) >= self.quotas["nodes"]:
                ret = _e.ENOSPC
                break
            ret = self._write_node(conn, item, False)
            if ret:
                break
            written.append(item)
            if item.parent is not None:
                self._entry_change(conn, item, +1)
            item = item.parent
        if not ret:
            return node
        table = self._db if conn.transaction is None else conn.transaction.copies
        for done in written:
            table.pop(done.name, None)
            if done.parent is not None:
                self._entry_change(conn, done, -1)
            if conn.transaction is not None:
                conn.transaction.fail = True
        self.errno = ret
        return None

    def _fire_watches(self, conn: Optional[Connection], name: bytes,
                      node: Optional[_Node], exact: bool,
                      perms: Optional[List[List[int]]]) -> None:
        if conn is not None and conn.transaction is not None:
            acc = conn.transaction.accessed.get(name)
            if acc is None:
                conn.transaction.fail = True
            elif not acc.fire_watch:
                acc.fire_watch = True
                acc.watch_exact = exact
            elif not exact:
                acc.watch_exact = False
            return
        special = name.startswith(b"@")
        for other in list(self._conns):
            if special:
                sperms = self._special.get(name)
                if sperms is None or not self._perm_for_conn(other, sperms) & P_READ:
                    continue
            elif not self._watch_permitted(other, name, node, perms):
                continue
            for watch in other.watches:
                if (name == watch.node) if exact else _is_child(name, watch.node):
                    self._send_event(other, self._watch_path(watch, name), watch.token)

    def _watch_permitted(self, conn: Connection, name: bytes, node: Optional[_Node],
                         perms: Optional[List[List[int]]]) -> bool:
        if perms is not None and self._perm_for_conn(conn, perms) & P_READ:
            return True
        if node is None:
            node = self._read_node(conn, name)
            if node is None:
                return False
        if self._perm_for_conn(conn, node.perms) & P_READ:
            return True
        parent = node.parent
        if parent is None:
            parent = self._read_node(conn, _get_parent(node.name))
            if parent is None:
                return False
        return bool(self._perm_for_conn(conn, parent.perms) & P_READ)

    @staticmethod
    def _watch_path(watch: _Watch, name: bytes) -> bytes:
        if watch.relative_path is None:
            return name
        path = name[len(watch.relative_path):]
        return path[1:] if path.startswith(b"/") else path

    # ------------------------------------------------------------------
    # Removal

    def _walk(self, conn: Optional[Connection], root: bytes,
              enter: Optional[Callable[[Optional[Connection], _Node], int]] = None,
              leave: Optional[Callable[[Optional[Connection], _Node], int]] = None) -> int:
        """Depth-first walk of the subtree at *root*: *enter* before a
        node's children, *leave* after them, as the daemon walks it."""
        ret = _WALK_OK
        node = None  # type: Optional[_Node]
        parent = None  # type: Optional[_Node]
        name = root
        while ret >= 0:
            if node is not None:
                if ret or node.childoff >= len(node.children):
                    parent = node.parent
                    ret = self._walk_call(conn, node, parent, leave)
                    if parent is None:
                        break
                    node = parent
                    continue
                name = _child_name(node.name, node.children[node.childoff])
                node.childoff += 1
                parent = node
            node = self._read_node(conn, name)
            if node is None:
                # A child listed but missing: the daemon's store is corrupt.
                ret = _WALK_ERROR_STOP
                break
            node.parent = parent
            node.childoff = 0
            ret = self._walk_call(conn, node, parent, enter)
        return ret if ret < 0 else _WALK_OK

    def _walk_call(self, conn: Optional[Connection], node: _Node,
                   parent: Optional[_Node],
                   func: Optional[Callable[[Optional[Connection], _Node], int]]) -> int:
        if func is None:
            return _WALK_OK
        ret = func(conn, node)
        if ret == _WALK_RM_CHILDENTRY and parent is not None:
            # Forget the child just visited in the parent's list.
            parent.childoff -= 1
            del parent.children[parent.childoff]
            if self._write_node(conn, parent, True):
                return _WALK_ERROR_STOP
            ret = _WALK_OK
        return ret

    def _rm_node(self, conn: Optional[Connection], name: bytes) -> int:
        parent = self._read_node(conn, _get_parent(name))
        if parent is None:
            return self.errno if self.errno in (_e.ENOMEM, _e.ENOSPC) else _e.EINVAL

        def delete(conn: Optional[Connection], node: _Node) -> int:
            err, table = self._access_node(conn, node, _DELETE)
            if err > 0:
                return _WALK_SUCCESS_STOP
            if not err:
                assert table is not None  # Given whenever there is no error.
                if table.pop(node.name, None) is None:
                    self.errno = _e.EIO
                    return _WALK_SUCCESS_STOP
            self._fire_watches(conn, node.name, node, node.name != name, None)
            self._entry_change(conn, node, -1)
            return _WALK_RM_CHILDENTRY

        ret = self._walk(conn, name, leave=delete)
        if ret < 0:
            if ret == _WALK_ERROR_STOP:
                self.errno = _e.EIO
            return self.errno
        base = _basename(name)
        if base not in parent.children:
            self.errno = _e.EIO
            return self.errno
        parent.children.remove(base)
        self.errno = _e.EIO if self._write_node(conn, parent, True) else 0
        return self.errno

    # ------------------------------------------------------------------
    # Operations on nodes

    def _do_directory(self, conn: Connection, payload: bytes) -> int:
        node, _ = self._get_node(conn, _onearg(payload), P_READ)
        if node is None:
            return self.errno
        self._reply(conn, Op.DIRECTORY, node.children_bytes())
        return 0

    def _do_directory_part(self, conn: Connection, payload: bytes) -> int:
        if payload.count(b"\0") != 2:
            return _e.EINVAL
        args = _strings(payload)
        node, _ = self._get_node(conn, args[0], P_READ)
        if node is None:
            return self.errno
        offset = _u32(_atoi(args[1]))
        gen = b"%d\0" % node.generation
        children = node.children_bytes()
        if offset >= len(children):
            self._reply(conn, Op.DIRECTORY_PART, gen + b"\0")
            return 0
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
        self._reply(conn, Op.DIRECTORY_PART, data)
        return 0

    def _do_read(self, conn: Connection, payload: bytes) -> int:
        node, _ = self._get_node(conn, _onearg(payload), P_READ)
        if node is None:
            return self.errno
        self._reply(conn, Op.READ, node.data)
        return 0

    def _do_write(self, conn: Connection, payload: bytes) -> int:
        nul = payload.find(b"\0")
        if nul < 0:
            return _e.EINVAL
        data = payload[nul + 1:]
        node, name = self._get_node(conn, payload[:nul], P_WRITE)
        if node is None:
            if self.errno != _e.ENOENT:
                return self.errno
            node = self._create_node(conn, name, data)
            if node is None:
                return self.errno
        else:
            node.data = data
            if self._write_node(conn, node, False):
                return self.errno
        self._fire_watches(conn, name, node, False, None)
        self._ack(conn, Op.WRITE)
        return 0

    def _do_mkdir(self, conn: Connection, payload: bytes) -> int:
        node, name = self._get_node(conn, _onearg(payload), P_WRITE)
        if node is None:
            if self.errno != _e.ENOENT:
                return self.errno
            if name is None:
                return _e.ENOMEM
            node = self._create_node(conn, name, b"")
            if node is None:
                return self.errno
            self._fire_watches(conn, name, node, False, None)
        self._ack(conn, Op.MKDIR)
        return 0

    def _do_rm(self, conn: Connection, payload: bytes) -> int:
        node, name = self._get_node(conn, _onearg(payload), P_WRITE)
        if node is None:
            if self.errno == _e.ENOENT:
                if name is None:
                    return _e.ENOMEM
                if self._read_node(conn, _get_parent(name)) is not None:
                    self._ack(conn, Op.RM)
                    return 0
                if self.errno not in (_e.ENOMEM, _e.ENOSPC):
                    self.errno = _e.ENOENT
            return self.errno
        assert name is not None  # A node was found by it.
        if name == b"/":
            return _e.EINVAL
        ret = self._rm_node(conn, name)
        if ret:
            return ret
        self._ack(conn, Op.RM)
        return 0

    def _do_get_perms(self, conn: Connection, payload: bytes) -> int:
        node, _ = self._get_node(conn, _onearg(payload), P_READ)
        if node is None:
            return self.errno
        text = []
        for domid, bits in node.perms:
            letter = _PERM_LETTERS.get(bits & ~P_IGNORE)
            if letter is None:
                self.errno = _e.EINVAL
                return self.errno
            text.append(letter + b"%d\0" % signed(domid, 32))
        self._reply(conn, Op.GET_PERMS, b"".join(text))
        return 0

    def _do_set_perms(self, conn: Connection, payload: bytes) -> int:
        count = payload.count(b"\0")
        if count < 2:
            return _e.EINVAL
        count -= 1
        if conn._unprivileged() and count > self.quotas["permissions"]:
            return _e.ENOSPC
        args = _strings(payload)
        perms = []
        for entry in args[1:1 + count]:
            perm = parse_perm(entry)  # access bits as P_READ and P_WRITE
            if perm is None:
                self.errno = _e.EINVAL
                return self.errno
            perms.append([_u32(perm[0]), perm[1]])
        for domid, _ in perms:
            self._find_or_alloc_domain(domid)
        name = args[0]
        if name.startswith(b"@"):
            special = self._special.get(name)
            if special is None or \
                    (self._perm_for_conn(conn, special) & (P_WRITE | P_OWNER)) != \
                    (P_WRITE | P_OWNER):
                # The daemon answers with errno here, whatever it holds.
                return self.errno
            self._special[name] = perms
            self._ack(conn, Op.SET_PERMS)
            return 0
        node, name = self._get_node(conn, name, P_WRITE | P_OWNER)
        if node is None:
            return self.errno
        if conn._unprivileged() and perms[0][0] != node.perms[0][0]:
            return _e.EPERM
        old_perms = node.perms
        self._entry_change(conn, node, -1)
        node.perms = perms
        self._entry_change(conn, node, +1)
        if self._write_node(conn, node, False):
            err = self.errno
            self._entry_change(conn, node, -1)
            node.perms = old_perms
            self._entry_change(conn, node, +1)
            self.errno = err
            return err
        self._fire_watches(conn, name, node, False, old_perms)
        self._ack(conn, Op.SET_PERMS)
        return 0

    # ------------------------------------------------------------------
    # Watches

    def _do_watch(self, conn: Connection, payload: bytes) -> int:
        args = _strings(payload)
        if len(args) != 2:
            return _e.EINVAL
        path, token = args
        if path.startswith(b"@"):
            relative = False
            err = _e.EINVAL if len(path) > self.quotas["path-max"] else 0
        else:
            relative = not path.startswith(b"/")
            path = self._canonicalize(conn, path)
            err = 0 if self._is_valid_nodename(path) else _e.EINVAL
        # The daemon stores this check's result in errno, 0 included.
        self.errno = err
        if err:
            return err
        for watch in conn.watches:
            if watch.node == path and watch.token == token:
                return _e.EEXIST
        if conn.domain is not None and conn._unprivileged() \
                and conn.domain.nbwatch > self.quotas["watches"]:
            return _e.E2BIG
        watch = _Watch(path, token, conn.home if relative else None)
        conn.watches.append(watch)
        if conn.domain is not None:
            conn.domain.nbwatch += 1
        self._ack(conn, Op.WATCH)
        self._send_event(conn, self._watch_path(watch, path), token)
        return 0

    def _do_unwatch(self, conn: Connection, payload: bytes) -> int:
        args = _strings(payload)
        if len(args) != 2:
            return _e.EINVAL
        path = self._canonicalize(conn, args[0])
        for watch in conn.watches:
            if watch.node == path and watch.token == args[1]:
                conn.watches.remove(watch)
                if conn.domain is not None and conn.domain.nbwatch:
                    conn.domain.nbwatch -= 1
                self._ack(conn, Op.UNWATCH)
                return 0
        return _e.ENOENT

    def _delete_all_watches(self, conn: Connection) -> None:
        if conn.domain is not None:
            conn.domain.nbwatch = max(0, conn.domain.nbwatch - len(conn.watches))
        del conn.watches[:]

    def _do_reset_watches(self, conn: Connection, payload: bytes) -> int:
        if conn.transaction is not None:
            # Sent with a live transaction id, this request trips an
            # assertion in xenstored (Debian 12's 4.17.5+72): no answer,
            # and the daemon is gone.
            return 0
        self._delete_all_watches(conn)
        self._delete_all_transactions(conn)
        self._ack(conn, Op.RESET_WATCHES)
        return 0

    # ------------------------------------------------------------------
    # Transactions

    def _delete_all_transactions(self, conn: Connection) -> None:
        conn.transactions.clear()
        conn.transaction = None

    def _do_transaction_start(self, conn: Connection, payload: bytes) -> int:
        if conn.transaction is not None:
            return _e.EBUSY
        if conn._unprivileged() and len(conn.transactions) > self.quotas["transactions"]:
            return _e.ENOSPC
        self.generation += 1
        generation = self.generation
        while True:
            tx_id = conn.next_transaction_id
            conn.next_transaction_id = _u32(tx_id + 1)
            if tx_id != 0 and tx_id not in conn.transactions:
                break
        conn.transactions[tx_id] = _Transaction(tx_id, generation)
        self._reply(conn, Op.TRANSACTION_START, b"%d\0" % tx_id)
        return 0

    def _fix_domains(self, trans: _Transaction, check_quota: bool, update: bool) -> int:
        for domid, delta in trans.changed_domains.items():
            if update:
                self._domains[domid].nbentry += delta
                continue
            domain = self._find_or_alloc_domain(domid)
            count = max(domain.nbentry + delta, 0)
            if domid == 0:
                count = 0
            if check_quota and count >= self.quotas["nodes"]:
                return _e.ENOSPC
        return 0

    def _do_transaction_end(self, conn: Connection, payload: bytes) -> int:
        arg = _onearg(payload)
        if arg not in (b"T", b"F"):
            return _e.EINVAL
        trans = conn.transaction
        if trans is None:
            return _e.ENOENT
        conn.transaction = None
        # The transaction ends here, whatever the outcome.
        del conn.transactions[trans.id]
        check_quota = trans.node_created and conn._unprivileged()
        if arg == b"T":
            if trans.fail:
                return _e.ENOMEM
            ret = self._fix_domains(trans, check_quota, False)
            if ret:
                return ret
            ret = self._finalize(conn, trans)
            if ret:
                return ret
            self._fix_domains(trans, False, True)
        self._ack(conn, Op.TRANSACTION_END)
        return 0

    def _finalize(self, conn: Connection, trans: _Transaction) -> int:
        for name, acc in list(trans.accessed.items()):
            if acc.check_gen:
                current = self._db.get(name)
                generation = current.generation if current is not None else NO_GENERATION
                if acc.generation != generation:
                    return _e.EAGAIN
            if not acc.modified:
                if acc.ta_node:
                    trans.copies.pop(name, None)
                del trans.accessed[name]
        for name, acc in list(trans.accessed.items()):
            if acc.ta_node:
                node = trans.copies.pop(name, None)
                if node is not None:
                    self.generation += 1
                    node.generation = self.generation
                    self._db[name] = node
            elif acc.generation != NO_GENERATION:
                self._db.pop(name, None)
            if acc.fire_watch:
                self._fire_watches(conn, name, None, acc.watch_exact, acc.perms)
            del trans.accessed[name]
        return 0

    # ------------------------------------------------------------------
    # Domains

    def _onearg_domain(self, payload: bytes) -> Tuple[int, Optional[_Domain]]:
        arg = _onearg(payload)
        if arg is None:
            return _e.EINVAL, None
        domid = _u32(_atoi(arg))
        if not domid:
            return _e.EINVAL, None
        return self._connected_domain(domid)

    def _connected_domain(self, domid: int) -> Tuple[int, Optional[_Domain]]:
        domain = self._introduced(domid)
        if domain is None:
            return _e.ENOENT, None
        if domain.conn is None:
            return _e.EINVAL, None
        return 0, domain

    def _do_introduce(self, conn: Connection, payload: bytes) -> int:
        args = _strings(payload)
        if len(args) < 3:
            return _e.EINVAL
        domid = _u32(_atoi(args[0]))
        if _u32(_atoi(args[2])) == 0:
            return _e.EINVAL
        fresh = domid not in self._domains
        domain = self._find_or_alloc_domain(domid)
        if not domain.introduced:
            # The daemon cannot map the new domain's ring page without a
            # hypervisor: the grant mapping fails with ENOSYS, and a domain
            # record made for the occasion is thrown away again.
            self.errno = _e.ENOSYS
            if fresh:
                self._forget_domain(domain)
            return _e.ENOSYS
        if domain.conn is not None:
            self._delete_all_watches(domain.conn)
            self._delete_all_transactions(domain.conn)
            del domain.conn.queued[:]
        self._ack(conn, Op.INTRODUCE)
        return 0

    def _do_release(self, conn: Connection, payload: bytes) -> int:
        err, domain = self._onearg_domain(payload)
        if err:
            return err
        assert domain is not None  # Given whenever there is no error.
        self._destroy_domain_conn(domain)
        self._ack(conn, Op.RELEASE)
        return 0

    def _destroy_domain_conn(self, domain: _Domain) -> None:
        conn = domain.conn
        assert conn is not None  # Only connected domains are destroyed.
        self._drop_conn(conn)
        domain.conn = None
        if domain.nbentry > 0:
            def remove_owned(_conn: Optional[Connection], node: _Node) -> int:
                if node.perms[0][0] != domain.domid:
                    return _WALK_OK
                self._rm_node(None, node.name)
                return _WALK_SKIP_CHILDREN if domain.nbentry > 0 else _WALK_SUCCESS_STOP
            self._walk(None, b"/", enter=remove_owned)
        self._forget_domain(domain)
        self._fire_watches(None, b"@releaseDomain", None, True, None)

    def _forget_domain(self, domain: _Domain) -> None:
        for perms in self._special.values():
            if perms[0][0] == domain.domid:
                perms[0][0] = 0
            perms[1:] = [p for p in perms[1:] if p[0] != domain.domid]
        del self._domains[domain.domid]

    def _do_resume(self, conn: Connection, payload: bytes) -> int:
        # The daemon clears the domain's shutdown flag, which only a
        # hypervisor sets: here there is nothing to clear.
        err, _ = self._onearg_domain(payload)
        if err:
            return err
        self._ack(conn, Op.RESUME)
        return 0

    def _do_set_target(self, conn: Connection, payload: bytes) -> int:
        args = _strings(payload)
        if len(args) < 2:
            return _e.EINVAL
        err, domain = self._connected_domain(_u32(_atoi(args[0])))
        if err:
            return err
        err, target = self._connected_domain(_u32(_atoi(args[1])))
        if err:
            return err
        # _connected_domain gives domains with a connection, or an error.
        assert domain is not None and domain.conn is not None and target is not None
        domain.conn.target = target.conn
        self._ack(conn, Op.SET_TARGET)
        return 0

    def _do_get_domain_path(self, conn: Connection, payload: bytes) -> int:
        arg = _onearg(payload)
        if arg is None:
            return _e.EINVAL
        self._reply(conn, Op.GET_DOMAIN_PATH,
                    b"/local/domain/%d\0" % _u32(_atoi(arg)))
        return 0

    def _do_is_domain_introduced(self, conn: Connection, payload: bytes) -> int:
        arg = _onearg(payload)
        if arg is None:
            return _e.EINVAL
        domid = _u32(_atoi(arg))
        known = domid == _DOMID_SELF or self._introduced(domid) is not None
        self._reply(conn, Op.IS_DOMAIN_INTRODUCED, b"T\0" if known else b"F\0")
        return 0

    # ------------------------------------------------------------------
    # CONTROL (formerly DEBUG)

    _CONTROL_HELP = [
        ("check", ""),
        ("log", "on|off"),
        ("live-update", "[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
                        "    Default timeout is 60 seconds."),
        ("logfile", "<file>"),
        ("memreport", "[<file>]"),
        ("print", "<string>"),
        ("quota", "[set <name> <val>|<domid>]"),
        ("quota-soft", "[set <name> <val>]"),
        ("help", ""),
    ]

    def _do_control(self, conn: Connection, payload: bytes) -> int:
        if b"\0" not in payload:
            return _e.EINVAL
        args = _strings(payload)
        command = args[0].decode("latin-1")
        if command not in dict(self._CONTROL_HELP):
            return _e.EINVAL
        if command == "live-update":
            args = args[:5]
        args = args[1:]
        text = self._control(command, args)
        if isinstance(text, int):
            return text
        self._reply(conn, Op.DEBUG, text.encode("latin-1") + b"\0")
        return 0

    def _control(self, command: str, args: List[bytes]) -> Union[str, int]:
        """Run a CONTROL command: the reply text, or an error number."""
        if command in ("check", "help"):
            if args:
                return _e.EINVAL
            if command == "check":
                return "OK"
            return "".join("%s\t%s\n" % item for item in self._CONTROL_HELP)
        if command == "log":
            return "OK" if args in ([b"on"], [b"off"]) else _e.EINVAL
        if command in ("logfile", "print"):
            # A trace file is not something the emulator keeps.
            return "OK" if len(args) == 1 else _e.EINVAL
        if command == "memreport":
            if len(args) > 1:
                return _e.EINVAL
            return "OK" if args else _e.EBADF
        if command == "live-update":
            return self._control_live_update(args)
        if command == "quota-soft":
            if not args:
                return self._quota_text(self.soft_quotas, _SOFT_QUOTA_TEXT)
            if args[0] == b"set":
                return self._quota_set(self.soft_quotas, args[1:])
            return _e.EINVAL
        # quota
        if not args:
            return self._quota_text(self.quotas, _QUOTA_TEXT)
        if args[0] == b"set":
            return self._quota_set(self.quotas, args[1:])
        if len(args) != 1:
            return _e.EINVAL
        domain = self._domains.get(_u32(_atoi(args[0])))
        if domain is None:
            return _e.ENOENT
        transactions = len(domain.conn.transactions) if domain.conn is not None else 0
        return "Domain %d:\n" % domain.domid + "".join(
            "%-16s: %8d\n" % item for item in (
                ("nodes", domain.nbentry), ("watches", domain.nbwatch),
                ("transactions", transactions), ("outstanding", 0),
                ("memory", self._memory_estimate(domain))))

    def _memory_estimate(self, domain: _Domain) -> int:
        # The daemon counts its own allocations; this is the same order of
        # magnitude: the records of the nodes the domain owns, and its
        # watches.
        total = 0
        for node in self._db.values():
            if node.perms and node.perms[0][0] == domain.domid:
                total += (len(node.name) + _RECORD_HEADER + _RECORD_PERM * len(node.perms)
                          + len(node.data) + node.childlen)
        for conn in self._conns:
            if conn.domid == domain.domid:
                total += sum(len(w.node) + len(w.token) for w in conn.watches)
                for trans in conn.transactions.values():
                    prefix = len(b"%d/" % trans.generation)
                    for node in trans.copies.values():
                        total += (prefix + len(node.name) + _RECORD_HEADER
                                  + _RECORD_PERM * len(node.perms) + len(node.data)
                                  + node.childlen)
        return total

    @staticmethod
    def _quota_text(values: Dict[str, int], names: Sequence[Tuple[str, str]]) -> str:
        return "Quota settings:\n" + "".join(
            "%-17s: %8d %s\n" % (name, values[name], text) for name, text in names)

    @staticmethod
    def _quota_set(values: Dict[str, int], args: List[bytes]) -> Union[str, int]:
        if len(args) != 2:
            return _e.EINVAL
        value = _atoi(args[1])
        name = args[0].decode("latin-1")
        if value < 1 or name not in values:
            return _e.EINVAL
        values[name] = value
        return "OK"

    def _control_live_update(self, args: List[bytes]) -> Union[str, int]:
        if not args:
            return _e.EINVAL
        if args[0] == b"-a":
            return "No live-update session active." if len(args) == 1 else _e.EINVAL
        if args[0] == b"-c":
            return "Not in live-update session." if len(args) == 2 else _e.EINVAL
        if args[0] == b"-s":
            i = 1
            while i < len(args):
                if args[i] == b"-t" and i < len(args) - 1:
                    i += 1
                elif args[i] != b"-F":
                    return _e.EINVAL
                i += 1
            return "Not in live-update session."
        # Starting a live update (-f <binary>) is not something an
        # emulator can do.
        self.errno = _e.EINVAL
        return _e.EINVAL

    # ------------------------------------------------------------------
    # Inspection, for tests

    def dump(self) -> Dict[str, Tuple[bytes, List[str]]]:
        """The committed tree: ``{path: (value, permissions)}``, paths and
        permissions as str."""
        result = {}
        for name, node in sorted(self._db.items()):
            result[name.decode("latin-1")] = (node.data, [
                "%s%d" % (_PERM_LETTERS.get(bits & ~P_IGNORE, b"n").decode(),
                          signed(domid, 32)) for domid, bits in node.perms])
        return result
