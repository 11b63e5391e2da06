"""Xen's own XenStore clients, for pyxs's tests and benchmarks: the C
command-line tools (``xenstore-read`` and friends) and the C extension
``xen.lowlevel.xs``, pointed at any XenStore socket (a real daemon's or
pyxs's emulator's).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import subprocess
import sys
from typing import Dict, List, Optional, Union

from . import xen
from .xen import Unavailable, WrongPython

#: The C clients shipped by xenstore-utils (hard links to one binary that
#: looks at its argv[0]).
C_CLIENTS = (
    "xenstore-read",
    "xenstore-write",
    "xenstore-ls",
    "xenstore-rm",
    "xenstore-exists",
    "xenstore-chmod",
    "xenstore-watch",
    "xenstore-list",
    "xenstore-control",
)


def c_client(name: str) -> List[str]:
    """argv prefix for one of Xen's C clients, e.g. ``c_client("xenstore-read")``.
    Run it with a daemon's :meth:`Daemon.client_env`."""
    if name not in C_CLIENTS:
        raise ValueError("unknown C client %r (known: %s)" % (name, ", ".join(C_CLIENTS)))
    path = xen.prefix() / "usr" / "bin" / name
    if not path.exists():
        raise Unavailable("%s missing from the unpacked packages (%s)" % (name, path))
    return [str(path)]


def client_env(socket_path: str, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a process using libxenstore (the C clients, or a
    Python 3.11 running xen.lowlevel.xs) to reach the XenStore listening
    on ``socket_path`` (a real daemon or pyxs's emulator)."""
    env = dict(os.environ if base is None else base)
    env.pop("LD_PRELOAD", None)
    env.pop("XENSTORED_RUNDIR", None)
    env["XENSTORED_PATH"] = socket_path
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(xen.lib_dir()) + (":" + old if old else "")
    return env


def run_c_client(daemon, name: str, *args: str, timeout: float = 10,
                 input: Union[str, bytes, None] = None,
                 text: bool = True) -> subprocess.CompletedProcess:
    """Run a C client against ``daemon`` (anything with a ``socket_path``:
    a Daemon or pyxs's emulator) and return the CompletedProcess
    (stdout/stderr captured; str unless ``text=False``; not checked)."""
    if isinstance(input, bytes):
        text = False
    return subprocess.run(
        c_client(name) + [str(a) for a in args], env=client_env(daemon.socket_path),
        input=input, capture_output=True, timeout=timeout,
        text=text, errors="surrogateescape" if text else None,
    )


_loaded_libs = []


def load_lowlevel_xs():
    """Import Xen's C extension ``xen.lowlevel.xs`` into this process and
    return the module.

    libxenstore reads ``XENSTORED_PATH`` when a handle is opened, so set
    ``os.environ["XENSTORED_PATH"] = daemon.socket_path`` before calling
    ``xs()`` (or use :func:`open_handle`).

    The extension is built for CPython 3.11 only; other versions raise
    :class:`Unavailable`.
    """
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        raise WrongPython(
            "xen.lowlevel.xs from Debian 12 is built for CPython 3.11 only, "
            "this is %s %d.%d: run these tests with python3.11"
            % (sys.implementation.name, sys.version_info[0], sys.version_info[1])
        )
    libs = xen.lib_dir()
    pydir = xen.prefix() / xen.XEN_DIR / "lib" / "python"
    if not _loaded_libs:
        # LD_LIBRARY_PATH is read once at process start, so load the
        # extension's dependencies by full path first, dependencies before
        # dependents; RTLD_GLOBAL makes the dynamic linker reuse them (matched
        # by soname) when the extension asks for libxenstore.so.4.
        for name in ("libxentoolcore.so.1", "libxenstore.so.4"):
            _loaded_libs.append(ctypes.CDLL(str(libs / name), mode=ctypes.RTLD_GLOBAL))
    if str(pydir) not in sys.path:
        sys.path.insert(0, str(pydir))
    try:
        return importlib.import_module("xen.lowlevel.xs")
    except ImportError as exc:
        raise Unavailable("cannot import xen.lowlevel.xs from %s: %s" % (pydir, exc)) from exc


def open_handle(module, socket_path: str, *args, **kwargs):
    """``module.xs(*args, **kwargs)``, connected to the XenStore listening
    on *socket_path*: the one way tests open a handle of
    ``xen.lowlevel.xs`` or of its stand-in ``pyxs._compat``.

    Both read the environment when a handle is opened, so XENSTORED_PATH
    points at *socket_path* and XENSTORED_RUNDIR is unset (the handle's
    target then depends on XENSTORED_PATH alone) only while ``xs()`` runs.
    """
    saved = {name: os.environ.get(name) for name in ("XENSTORED_PATH", "XENSTORED_RUNDIR")}
    os.environ["XENSTORED_PATH"] = socket_path
    os.environ.pop("XENSTORED_RUNDIR", None)
    try:
        return module.xs(*args, **kwargs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def open_lowlevel_xs(daemon, **kwargs):
    """A ``xen.lowlevel.xs.xs(**kwargs)`` handle connected to *daemon*
    (anything with a ``socket_path``), through :func:`open_handle`."""
    return open_handle(load_lowlevel_xs(), daemon.socket_path, **kwargs)
