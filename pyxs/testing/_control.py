"""The ``CONTROL`` request (formerly ``DEBUG``): the daemon's commands
for its administrator (xenstored_control.c).

The commands that only concern the daemon's own process (its log, a
live update) are accepted with the daemon's checks and answers, and do
nothing; ``quota`` and ``quota-soft`` show and set the store's quotas.
"""

import errno
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

from .._cnumbers import u32
from .._internal import Op, split_strings
from ._model import Connection, Domain, atoi
from ._outcome import Outcome, RequestFailed

if TYPE_CHECKING:
    from ._store import Store

_HELP = [
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
_COMMANDS = frozenset(name for name, _ in _HELP)

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


# xenstored_control.c: do_control()
def op_control(store: "Store", out: Outcome, conn: Connection, payload: bytes) -> None:
    if b"\0" not in payload:
        raise RequestFailed(errno.EINVAL)
    args = split_strings(payload)
    command = args[0].decode("latin-1")
    if command not in _COMMANDS:
        raise RequestFailed(errno.EINVAL)
    if command == "live-update":
        args = args[:5]
    text = _run(store, command, args[1:])
    out.reply(Op.DEBUG, text.encode("latin-1") + b"\0")


def _run(store: "Store", command: str, args: List[bytes]) -> str:
    """Run a command: the reply text.

    :raises RequestFailed: for bad arguments, as the daemon answers them.
    """
    if command in ("check", "help"):
        if args:
            raise RequestFailed(errno.EINVAL)
        if command == "check":
            return "OK"
        # xenstored_control.c: do_control_help()
        return "".join("%s\t%s\n" % item for item in _HELP)
    if command == "log":
        _require(args in ([b"on"], [b"off"]))
        return "OK"
    if command in ("logfile", "print"):
        # A trace file is not something the emulator keeps.
        _require(len(args) == 1)
        return "OK"
    if command == "memreport":
        _require(len(args) <= 1)
        if not args:
            raise RequestFailed(errno.EBADF)
        return "OK"
    if command == "live-update":
        return _live_update(store, args)
    if command == "quota-soft":
        # xenstored_control.c: do_control_quota_s()
        if not args:
            return _quota_text(store.soft_quotas, _SOFT_QUOTA_TEXT)
        _require(args[0] == b"set")
        return _quota_set(store.soft_quotas, args[1:])
    # xenstored_control.c: do_control_quota()
    if not args:
        return _quota_text(store.quotas, _QUOTA_TEXT)
    if args[0] == b"set":
        return _quota_set(store.quotas, args[1:])
    _require(len(args) == 1)
    domain = store.domains.get(u32(atoi(args[0])))
    if domain is None:
        raise RequestFailed(errno.ENOENT)
    return _domain_quotas(store, domain)


def _require(condition: bool) -> None:
    """Fail the request with EINVAL unless *condition* holds."""
    if not condition:
        raise RequestFailed(errno.EINVAL)


# xenstored_control.c: quota_show_current()
def _quota_text(values: Dict[str, int], names: Sequence[Tuple[str, str]]) -> str:
    return "Quota settings:\n" + "".join(
        "%-17s: %8d %s\n" % (name, values[name], text) for name, text in names)


# xenstored_control.c: quota_set()
def _quota_set(values: Dict[str, int], args: List[bytes]) -> str:
    _require(len(args) == 2)
    value = atoi(args[1])
    name = args[0].decode("latin-1")
    _require(value >= 1 and name in values)
    values[name] = value
    return "OK"


# xenstored_control.c: quota_get(); xenstored_domain.c: domain_get_quota()
def _domain_quotas(store: "Store", domain: Domain) -> str:
    transactions = len(domain.conn.transactions) if domain.conn is not None else 0
    return "Domain %d:\n" % domain.domid + "".join(
        "%-16s: %8d\n" % item for item in (
            ("nodes", domain.node_count), ("watches", domain.watch_count),
            ("transactions", transactions), ("outstanding", 0),
            ("memory", _memory_estimate(store, domain))))


def _memory_estimate(store: "Store", domain: Domain) -> int:
    # The daemon counts its own allocations; this is the same order of
    # magnitude: the records of the nodes the domain owns, and its
    # watches.
    total = 0
    for node in store.nodes.values():
        if node.perms and node.perms[0][0] == domain.domid:
            total += len(node.name) + node.record_size()
    for conn in store.connections:
        if conn.domid == domain.domid:
            total += sum(len(w.node) + len(w.token) for w in conn.watches)
            for trans in conn.transactions.values():
                prefix = len(b"%d/" % trans.generation)
                for node in trans.copies.values():
                    total += prefix + len(node.name) + node.record_size()
    return total


# xenstored_control.c: do_control_lu()
def _live_update(store: "Store", args: List[bytes]) -> str:
    _require(bool(args))
    if args[0] == b"-a":
        _require(len(args) == 1)
        return "No live-update session active."
    if args[0] == b"-c":
        _require(len(args) == 2)
        return "Not in live-update session."
    if args[0] == b"-s":
        i = 1
        while i < len(args):
            if args[i] == b"-t" and i < len(args) - 1:
                i += 1
            elif args[i] != b"-F":
                raise RequestFailed(errno.EINVAL)
            i += 1
        return "Not in live-update session."
    # Starting a live update (-f <binary>) is not something an emulator
    # can do.
    store.errno = errno.EINVAL
    raise RequestFailed(errno.EINVAL)
