"""Differential testing of pyxs._compat against Xen's C extension.

A *scenario* is a function of one :class:`Recorder`.  It opens handles
with ``rec.open()``, calls their methods through ``rec.call()`` (and the
few helpers below), and every outcome is written to ``rec.log``: the
value returned, with its type, or the exception raised, with its class
name and arguments.  :func:`differential` runs a scenario once with the
real ``xen.lowlevel.xs`` and once with ``pyxs._compat``, each side in a
subtree of its own, and the two logs must be equal.

Only what must differ is normalised before comparing:

* each side's subtree prefix (``rec.root`` for absolute paths, ``rec.rel``
  for paths relative to ``/local/domain/0``), the same length on both
  sides so that size limits hit at the same place;
* the module's name inside messages (``xen.lowlevel.xs`` /
  ``pyxs._compat``) and the C source location CPython puts in front of
  "bad argument to internal function";
* transaction handles, recorded as labels in order of appearance (after
  checking their form), since oxenstored numbers transactions globally;
* token objects in watch events, recorded as the label of the object
  they are *identical* to (or as "not one of ours");
* file descriptor numbers (recorded as "a non-negative int").
"""

import os
import re
import select
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from pyxs._internal import Op

from ..support.wire import raw_request
from ..support.xen_clients import open_handle

#: The two sides, their subtree names (equal length on purpose).
SIDES = ("real", "pyxs")

_MODULE_NAMES = re.compile(r"xen\.lowlevel\.xs|pyxs\._compat")
_C_LOCATION = re.compile(r"^[\w/.]+\.c:\d+: ")
_HANDLE = re.compile(r"[0-9A-F]+")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


class Recorder:
    """Runs one side of a scenario and logs every outcome."""

    def __init__(self, side: str, module, daemon, root: str, rel: str) -> None:
        self.side = side
        self.module = module
        self.daemon = daemon
        self.socket_path = daemon.socket_path
        self.root = root
        self.rel = rel
        self.log: List[Tuple[str, Any]] = []
        self._handles: List[Any] = []
        self._objects: Dict[int, Tuple[str, object]] = {}
        self._tx_labels: Dict[str, str] = {}

    # Handles.

    def open(self, *args, socket_path: Optional[str] = None, **kwargs):
        """Open a handle (closed at the end of the scenario)."""
        handle = open_handle(self.module, socket_path or self.socket_path, *args, **kwargs)
        self._handles.append(handle)
        return handle

    def try_open(self, label: str, *args, socket_path: Optional[str] = None, **kwargs):
        """Open a handle, logging the outcome; None when it failed."""
        return self.call(label, lambda: self.open(*args, socket_path=socket_path, **kwargs),
                         describe=lambda h: ("handle", type(h).__name__))

    def close_all(self) -> None:
        for handle in self._handles:
            try:
                handle.close()
            except Exception:
                pass
        self._handles.clear()

    # Logging.

    def token(self, label: str, obj: object) -> object:
        """Name an object, so that events carrying it log as *label*."""
        self._objects[id(obj)] = (label, obj)
        return obj

    def call(self, label: str, func: Callable[..., Any], *args, describe=None, **kwargs):
        """Call ``func(*args, **kwargs)`` and log the outcome; return the
        value (None when it raised)."""
        try:
            value = func(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - every outcome is data here
            self.log.append((self.label(label), self.describe_exception(e)))
            return None
        self.log.append((self.label(label), (describe or self.describe)(value)))
        return value

    def note(self, label: str, value: Any) -> None:
        """Log a value the scenario computed itself."""
        self.log.append((self.label(label), self.describe(value)))

    def start(self, label: str, handle) -> Optional[str]:
        """``handle.transaction_start()``, logging the handle as a label."""
        def describe(th):
            if not isinstance(th, str) or not _HANDLE.fullmatch(th):
                return ("bad handle", repr(th))
            if th not in self._tx_labels:
                self._tx_labels[th] = "TX%d" % (len(self._tx_labels) + 1)
            return ("handle", self._tx_labels[th])
        return self.call(label, handle.transaction_start, describe=describe)

    def event(self, label: str, func: Callable[[], Any]):
        """Call ``read_watch``/``check_watch`` and log the event, its token
        as the label of the identical object."""
        return self.call(label, func, describe=self.describe_event)

    def fileno(self, label: str, handle) -> Optional[int]:
        return self.call(label, handle.fileno,
                         describe=lambda fd: ("fd", type(fd).__name__, fd >= 0))

    def failed_for_good(self, handle, path: str) -> None:
        """Log every kind of call on *handle* after it has failed (its
        daemon gone, say), reading and writing at *path*, then closing
        it twice."""
        self.call("read", handle.read, "", path)
        self.call("write", handle.write, "", path + "/x", "y")
        self.call("transaction_start", handle.transaction_start)
        self.call("watch", handle.watch, path, 1)
        self.call("check_watch", handle.check_watch)
        self.call("read_watch", handle.read_watch)
        self.fileno("fileno", handle)
        self.call("close", handle.close)
        self.call("close again", handle.close)

    def readable(self, label: str, handle, timeout: float) -> bool:
        """Log whether ``handle.fileno()`` polls readable within
        *timeout* seconds."""
        ready = bool(select.select([handle.fileno()], [], [], timeout)[0])
        self.note(label, ready)
        return ready

    def next_event(self, label: str, handle, timeout: float = 10.0):
        """Wait (with select on fileno) for an event, then check_watch."""
        self.readable(label + " readable", handle, timeout)
        return self.event(label, handle.check_watch)

    def drain(self, label: str, handle, timeout: float = 10.0) -> None:
        """Log check_watch results until one raises, for at most
        *timeout* seconds (``None`` results, "nothing yet", are not
        logged: when they stop is a matter of timing)."""
        deadline = time.monotonic() + timeout
        count = 0
        while time.monotonic() < deadline:
            try:
                value = handle.check_watch()
            except Exception as e:  # noqa: BLE001
                self.log.append(("%s #%d" % (label, count), self.describe_exception(e)))
                return
            if value is not None:
                self.log.append(("%s #%d" % (label, count), self.describe_event(value)))
                count += 1
            else:
                time.sleep(0.01)
        self.log.append((label, "no error within %gs" % timeout))

    # Describing outcomes.

    def text(self, value: str) -> str:
        return value.replace(self.root, "<root>").replace(self.rel, "<rel>")

    def label(self, label: str) -> str:
        """A step's label, without the subtree or object addresses."""
        return _ADDRESS.sub(" at 0x...", self.text(label))

    def describe(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return (type(value).__name__, value)
        if isinstance(value, str):
            return ("str", self.text(value))
        if isinstance(value, bytes):
            return ("bytes", value.replace(self.root.encode(), b"<root>")
                    .replace(self.rel.encode(), b"<rel>"))
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [self.describe(item) for item in value])
        if isinstance(value, dict):
            return ("dict", [(key, self.describe(item)) for key, item in value.items()])
        known = self._objects.get(id(value))
        if known is not None and known[1] is value:
            return ("object", known[0])
        return ("unknown", type(value).__name__)

    def describe_event(self, value: Any) -> Any:
        if not (isinstance(value, tuple) and len(value) == 2):
            return self.describe(value)
        path, token = value
        known = self._objects.get(id(token))
        if known is not None and known[1] is token:
            token_description = ("token", known[0])
        else:
            token_description = ("not one of ours", self.describe(token))
        return ("event", self.describe(path), token_description)

    def describe_exception(self, e: BaseException) -> Any:
        def clean(arg):
            if isinstance(arg, str):
                return _C_LOCATION.sub("", _MODULE_NAMES.sub("<module>", self.text(arg)))
            return self.describe(arg)
        return ("raises", type(e).__name__, [clean(arg) for arg in e.args])


def differential(scenario: Callable[[Recorder], None], modules: Dict[str, Any],
                 daemons: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """Run *scenario* with each side's module and daemon, and assert that
    the logs are equal; return the log.

    :param modules: ``{"real": xen.lowlevel.xs, "pyxs": pyxs._compat}``.
    :param daemons: the daemon each side talks to (usually the same
        one); the nodes the scenario may have made are removed from it
        afterwards.
    """
    unique = uuid.uuid4().hex
    logs = {}
    for side in SIDES:
        rec = Recorder(side, modules[side], daemons[side],
                       root="/pyxs-test/%s/%s" % (unique, side),
                       rel="pyxs-test-%s/%s" % (unique, side))
        try:
            scenario(rec)
        finally:
            rec.close_all()
            if daemons[side].alive():
                remove(daemons[side].socket_path,
                       ["/pyxs-test/" + unique, "/local/domain/0/pyxs-test-" + unique])
        logs[side] = rec.log
    # PYXS_COMPAT_DUMP=file: append both logs of every scenario where the
    # two sides disagree (PYXS_COMPAT_DUMP_ALL=1: of every scenario).
    dump_all = os.environ.get("PYXS_COMPAT_DUMP_ALL") == "1"
    if (logs["pyxs"] != logs["real"] or dump_all) and os.environ.get("PYXS_COMPAT_DUMP"):
        with open(os.environ["PYXS_COMPAT_DUMP"], "a") as dump:
            for side in SIDES:
                dump.write("=== %s %s %s\n" % (getattr(scenario, "__qualname__", scenario),
                                                daemons[side].kind, side))
                dump.writelines("%r\n" % (entry,) for entry in logs[side])
    assert logs["pyxs"] == logs["real"], mismatch(logs["real"], logs["pyxs"])
    return logs["real"]


def mismatch(real: List[Tuple[str, Any]], ours: List[Tuple[str, Any]]) -> str:
    """A readable account of where two logs part."""
    lines = ["xen.lowlevel.xs and pyxs._compat disagree:"]
    for i in range(max(len(real), len(ours))):
        a = real[i] if i < len(real) else ("<missing>", None)
        b = ours[i] if i < len(ours) else ("<missing>", None)
        if a != b:
            lines.append("  step %d %r:\n    real: %r\n    pyxs: %r" % (i, a[0], a[1], b[1]))
            if b[0] != a[0]:
                lines.append("    (pyxs step label: %r)" % (b[0],))
        if len(lines) > 25:
            lines.append("  ...")
            break
    return "\n".join(lines)


def remove(socket_path: str, paths: List[str]) -> None:
    """Remove nodes with raw requests, independently of both modules."""
    for path in paths:
        try:
            raw_request(socket_path, Op.RM, path.encode() + b"\0",
                                    timeout=5)
        except OSError:
            pass
