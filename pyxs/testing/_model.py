"""The emulator's records, and the rules for paths and arguments they obey.

Everything here is data, with no request logic: the records the daemon
keeps (nodes, transactions, watches, domains, connections), the
permission bits, the record sizes the quotas count, and the small C
conventions the daemon applies to paths and numbers.  The modules that
handle requests (:mod:`._core`, :mod:`._transaction`, :mod:`._watch`,
:mod:`._domain`, :mod:`._control`) share them.

Paths, values and tokens are bytes throughout, like the C strings they
are in the daemon.
"""

import enum
from collections import OrderedDict
from typing import Dict, List, Optional

from .._cnumbers import C_SPACE, signed, strtol

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

# Permission bits, as the daemon keeps them (xenstore_lib.h: XS_PERM_*).
P_NONE = 0x00
P_READ = 0x01
P_WRITE = 0x02
P_OWNER = 0x08
P_IGNORE = 0x10
P_ALL = P_READ | P_WRITE | P_OWNER
# Their letters: pyxs._cnumbers.PERM_LETTERS, by the read and write bits.

#: A node's permissions: ``[domid, bits]`` entries, the owner first.
Perms = List[List[int]]

# Size of the daemon's per-node record header, and of one permission entry:
# the node-size quota counts them along with the value and the child list.
RECORD_HEADER = 24
RECORD_PERM = 8

_VALID_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-/_@")
_LOCAL_DOMAIN = b"/local/domain/"


class Access(enum.Enum):
    """What a node access is for: a transaction records reads and changes
    apart (xenstored_transaction.h: ``enum node_access_type``)."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"


# Numbers and arguments.

def atoi(text: bytes) -> int:
    """C ``atoi`` (an ``int``, so truncated to 32 bits)."""
    return signed(strtol(text, 10)[0], 32)


# xenstored_core.c: onearg()
def onearg(payload: bytes) -> Optional[bytes]:
    """The argument of a one-argument request, or None unless the payload
    is exactly one string and its NUL."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1]


# Paths.

def local_offset(name: bytes) -> int:
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


# xenstored_core.c: is_valid_nodename()
def is_valid_nodename(name: bytes, path_max: int) -> bool:
    """Whether *name* is an absolute path of valid characters, without
    empty components, at most *path_max* bytes past its domain's home."""
    if not name.startswith(b"/"):
        return False
    if name.endswith(b"/") and name != b"/":
        return False
    if b"//" in name:
        return False
    if len(name) > local_offset(name) + path_max:
        return False
    return all(c in _VALID_CHARS for c in name)


# xenstored_core.c: get_parent()
def get_parent(name: bytes) -> bytes:
    slash = name.rfind(b"/", 1)
    return name[:slash] if slash > 0 else b"/"


# xenstored_core.c: basename()
def basename(name: bytes) -> bytes:
    return name[name.rfind(b"/") + 1:]


# xenstored_core.c: child_name()
def child_name(parent: bytes, child: bytes) -> bytes:
    return parent + b"/" + child if parent != b"/" else b"/" + child


# xenstored_watch.c: is_child()
def is_child(child: bytes, parent: bytes) -> bool:
    """Whether *child* is *parent* or lies below it."""
    if parent == b"/":
        return True
    if not child.startswith(parent):
        return False
    return len(child) == len(parent) or child[len(parent)] == 0x2F


# Records.

class Node:
    """One node, as a request handler holds it: a private copy, which
    changes nothing until it is written back.

    :ivar parent: the parent's copy, set while the node is being created
        or walked.
    :ivar next_child: while walked, the index in :attr:`children` of the
        next child to visit (C: ``childoff``).
    """

    __slots__ = ("name", "generation", "perms", "data", "children",
                 "parent", "next_child")

    def __init__(self, name: bytes, generation: int = NO_GENERATION,
                 perms: Optional[Perms] = None, data: bytes = b"",
                 children: Optional[List[bytes]] = None) -> None:
        self.name = name
        self.generation = generation
        self.perms: Perms = perms if perms is not None else []
        self.data = data
        self.children: List[bytes] = children if children is not None else []
        self.parent: Optional[Node] = None
        self.next_child = 0

    def copy(self) -> "Node":
        return Node(self.name, self.generation, [list(p) for p in self.perms],
                    self.data, list(self.children))

    def children_bytes(self) -> bytes:
        """The child list as the daemon stores it: each name and a NUL."""
        return b"".join(c + b"\0" for c in self.children)

    def record_size(self) -> int:
        """Size of the daemon's record of the node: what the node-size
        quota limits (xenstored_core.c: write_node_raw())."""
        return (RECORD_HEADER + RECORD_PERM * len(self.perms) + len(self.data)
                + sum(len(c) + 1 for c in self.children))


class Accessed:
    """A node a transaction has touched (xenstored_transaction.c:
    ``struct accessed_node``).

    :ivar generation: the node's generation when first read, to compare
        at commit.
    :ivar perms: its permissions then, for the watches fired at commit.
    :ivar check_generation: whether the commit fails if the node changed
        since (C: ``check_gen``).
    :ivar modified: whether the transaction changed it.
    :ivar has_copy: whether the transaction holds a copy of it, to be
        committed or dropped (C: ``ta_node``).
    :ivar fire_watch: whether its watches fire at commit.
    :ivar watch_exact: whether only watches on the node itself do.
    """

    __slots__ = ("generation", "perms", "check_generation", "modified", "has_copy",
                 "fire_watch", "watch_exact")

    def __init__(self) -> None:
        self.generation = 0
        self.perms: Optional[Perms] = None
        self.check_generation = False
        self.modified = False
        self.has_copy = False
        self.fire_watch = False
        self.watch_exact = False


class Transaction:
    """One open transaction (see :mod:`._transaction`).

    :ivar accessed: the nodes it touched, in order of first access.
    :ivar copies: its private copies of nodes, by name.
    :ivar changed_domains: node-count changes per owning domain, applied
        at commit.
    :ivar fail: set once a change failed: the commit then fails too.
    """

    __slots__ = ("id", "generation", "accessed", "copies", "nodes",
                 "changed_domains", "node_created", "fail")

    def __init__(self, tx_id: int, generation: int) -> None:
        self.id = tx_id
        self.generation = generation
        self.accessed: Dict[bytes, Accessed] = OrderedDict()
        self.copies: Dict[bytes, Node] = {}
        self.nodes = 0
        self.changed_domains: Dict[int, int] = OrderedDict()
        self.node_created = False
        self.fail = False


class Watch:
    """One watch; *relative_path* is the home a relative watch was set
    from, which its events leave out."""

    __slots__ = ("node", "token", "relative_path")

    def __init__(self, node: bytes, token: bytes, relative_path: Optional[bytes]) -> None:
        self.node = node
        self.token = token
        self.relative_path = relative_path


class Domain:
    """What the daemon knows of a domain (xenstored_domain.c: ``struct
    domain``): its node and watch counts for the quotas, and its ring
    connection while it is introduced."""

    __slots__ = ("domid", "generation", "introduced", "node_count", "watch_count",
                 "conn", "path")

    def __init__(self, domid: int, generation: int) -> None:
        self.domid = domid
        self.generation = generation
        self.introduced = False
        self.node_count = 0
        self.watch_count = 0
        self.conn: Optional[Connection] = None
        self.path = b"/local/domain/%d" % domid


class Connection:
    """One client's conversation with the store.

    Create connections with :meth:`Store.connect <pyxs.testing._store.Store.connect>`.
    A Unix-socket connection acts as domain 0 with full privileges; a
    connection for another domain id is that domain's XenBus ring:
    unprivileged, with its home at ``/local/domain/<domid>`` and subject
    to quotas.

    :ivar domid: the domain the connection speaks for.
    :ivar broken: set when the store failed the connection: the real
        daemon would have crashed or dropped it here.  The store answers
        it no more.
    :ivar closed: set once the store has closed the connection and
        forgotten it (its client went away, or its domain was released).
    """

    def __init__(self, domid: int, domain: Optional[Domain]) -> None:
        self.domid = domid
        self.domain = domain
        self.watches: List[Watch] = []
        self.transactions: Dict[int, Transaction] = OrderedDict()
        #: The transaction of the request being handled, if any.
        self.transaction: Optional[Transaction] = None
        self.next_transaction_id = 0
        self.target: Optional[Connection] = None
        self.broken = False
        self.closed = False

    @property
    def privileged(self) -> bool:
        """Whether the connection bypasses permissions and quotas."""
        return self.domain is None or self.domain.domid == 0

    @property
    def home(self) -> bytes:
        """Where relative paths are resolved: ``/local/domain/<domid>``."""
        return self.domain.path if self.domain is not None else b"/local/domain/0"

    def __repr__(self) -> str:
        return "<Connection domid=%d%s>" % (self.domid, " closed" if self.closed else "")

