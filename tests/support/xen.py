"""Xen 4.17 for pyxs's tests and benchmarks: what the machine must provide,
and the one place that decides whether its absence skips or fails.

Debian 12 packages Xen 4.17: the C daemon ``xenstored``, the OCaml daemon
``oxenstored``, the C command-line clients (``xenstore-read`` and friends)
and the C Python extension ``xen.lowlevel.xs``. This module fetches those
packages with ``apt-get download`` (nothing is installed system-wide),
unpacks them into a cache directory (:func:`prefix`) and builds a small
LD_PRELOAD library (``tests/xenfake/xenfake.c``) that stands in for the
hypervisor. :mod:`tests.support.daemons` starts the daemons and
:mod:`tests.support.xen_clients` runs the clients.

Everything that the machine cannot provide raises :class:`Unavailable`
with a message naming what is missing and how to get it. Tests go through
:func:`require`, which turns that into a skip, or into a failure when the
environment variable ``PYXS_REQUIRE_REAL_DAEMONS=1`` is set (CI uses that
so that a broken set-up cannot pass silently as "all skipped").

Environment variables:

``PYXS_XEN_CACHE``
    Cache directory (default ``~/.cache/pyxs-xen``).
``PYXS_REQUIRE_REAL_DAEMONS``
    ``1``: unavailability is a test failure instead of a skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

#: Debian 12 packages that together hold the daemons, the clients, the
#: Python extension (in xen-utils-4.17) and every Xen library they link.
PACKAGES = (
    "xen-utils-4.17",
    "libxenmisc4.17",
    "libxenevtchn1",
    "libxengnttab1",
    "libxentoollog1",
    "libxentoolcore1",
    "libxencall1",
    "libxenforeignmemory1",
    "libxendevicemodel1",
    "libxenstore4",
    "xenstore-utils",
)

REQUIRE_ENV = "PYXS_REQUIRE_REAL_DAEMONS"
CACHE_ENV = "PYXS_XEN_CACHE"

#: Where the packages put Xen's own programs, under :func:`prefix`.
XEN_DIR = "usr/lib/xen-4.17"
_STAMP = ".pyxs-stamp"
_FAKE_SOURCE = Path(__file__).resolve().parent.parent / "xenfake" / "xenfake.c"
_CFLAGS = ("-O2", "-shared", "-fPIC")


class Unavailable(Exception):
    """This machine cannot provide the real daemons; the message says why
    and what would fix it."""


class WrongPython(Unavailable):
    """What this machine provides cannot run under this Python (Debian's
    xen.lowlevel.xs is built for CPython 3.11 only): its tests skip even
    when PYXS_REQUIRE_REAL_DAEMONS=1, since no setting could enable them
    here; run-tests runs them in its Python 3.11 pass."""


class DaemonError(RuntimeError):
    """A daemon was available but did not behave (failed to start, ...)."""


# Skip-or-fail policy.

def required() -> bool:
    """True when ``PYXS_REQUIRE_REAL_DAEMONS`` asks for unavailability to
    be a failure."""
    value = os.environ.get(REQUIRE_ENV, "").strip().lower()
    return value not in ("", "0", "no", "false", "off")


def require(fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)``; on :class:`Unavailable`, skip the
    current pytest test, or fail it when ``PYXS_REQUIRE_REAL_DAEMONS=1``.

    This is the only place that policy lives: test helpers and conftest
    fixtures all go through it.
    """
    try:
        return fn(*args, **kwargs)
    except Unavailable as exc:
        import pytest

        if required() and not isinstance(exc, WrongPython):
            pytest.fail(
                "real XenStore daemons required (%s=1) but unavailable: %s"
                % (REQUIRE_ENV, exc),
                pytrace=False,
            )
        if isinstance(exc, WrongPython):
            pytest.skip("not on this Python: %s" % exc)
        pytest.skip("real XenStore daemons unavailable: %s" % exc)


# Packages.

def cache_dir() -> Path:
    """The cache directory: ``$PYXS_XEN_CACHE`` or ``~/.cache/pyxs-xen``."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env) if env else Path.home() / ".cache" / "pyxs-xen"
    return path.expanduser().resolve()


def _check_platform() -> None:
    if not sys.platform.startswith("linux"):
        raise Unavailable(
            "the real XenStore daemons are Linux binaries (this is %s): "
            "run on Debian 12 (bookworm)" % sys.platform
        )


def _read_stamp(root: Path) -> Optional[dict]:
    try:
        data = json.loads((root / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    if data.get("packages") != list(PACKAGES):
        return None
    return data


def last_lines(text: Union[str, bytes], lines: int = 15) -> str:
    """The last *lines* lines of a program's output, for error messages."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.strip().splitlines()[-lines:])


def _apt_download(dest: Path) -> None:
    cmd = [
        "apt-get", "download", "-q",
        # Download as root into our private directory without the _apt
        # sandbox user (who could not write there anyway).
        "-o", "APT::Sandbox::User=root",
    ] + list(PACKAGES)
    proc = subprocess.run(cmd, cwd=str(dest), capture_output=True, text=True)
    if proc.returncode != 0 and os.geteuid() == 0:
        # Usually a fresh machine whose package lists were never fetched.
        upd = subprocess.run(
            ["apt-get", "update", "-q"], capture_output=True, text=True
        )
        if upd.returncode != 0:
            raise Unavailable(
                "'apt-get download' failed and so did 'apt-get update' "
                "(is Debian's archive reachable?):\n" + last_lines(upd.stderr)
            )
        proc = subprocess.run(cmd, cwd=str(dest), capture_output=True, text=True)
    if proc.returncode != 0:
        hint = (
            "run 'apt-get update' as root first"
            if os.geteuid() != 0
            else "these packages exist in Debian 12 (bookworm) only"
        )
        raise Unavailable(
            "'apt-get download %s' failed (%s):\n%s"
            % (" ".join(PACKAGES), hint, last_lines(proc.stderr))
        )


def _unpack(debs: Path, root: Path) -> Dict[str, str]:
    versions = {}
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(
            ["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True
        )
        out = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Package", "Version"],
            check=True, capture_output=True, text=True,
        ).stdout
        fields = dict(
            line.split(": ", 1) for line in out.splitlines() if ": " in line
        )
        versions[fields.get("Package", deb.name)] = fields.get("Version", "?")
    missing = sorted(set(PACKAGES) - set(versions))
    if missing:
        raise Unavailable("apt-get did not deliver: %s" % ", ".join(missing))
    return versions


def prefix() -> Path:
    """Return the directory the Xen packages are unpacked into, fetching
    and unpacking them first if needed.

    Idempotent and cheap once done (a stamp file inside the prefix, written
    before the prefix is atomically renamed into place). Concurrent callers
    serialise on a lock file, so two processes never download at once.
    """
    _check_platform()
    cache = cache_dir()
    root = cache / "xen-4.17"
    if _read_stamp(root) is not None:
        return root

    for tool, package in (("apt-get", "apt"), ("dpkg", "dpkg"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise Unavailable(
                "%s not found: run on Debian 12 (bookworm) with apt access "
                "(package %s)" % (tool, package)
            )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Unavailable(
            "cannot create cache dir %s (%s): set %s to a writable directory"
            % (cache, exc, CACHE_ENV)
        ) from exc

    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_stamp(root) is not None:  # another process finished it
            return root
        work = Path(tempfile.mkdtemp(prefix="unpack-", dir=str(cache)))
        try:
            debs = work / "debs"
            debs.mkdir()
            _apt_download(debs)
            new_root = work / "root"
            versions = _unpack(debs, new_root)
            stamp = {"packages": list(PACKAGES), "versions": versions}
            (new_root / _STAMP).write_text(json.dumps(stamp, indent=1))
            if root.exists() or root.is_symlink():
                root.rename(work / "stale")  # an old, incomplete attempt
            new_root.rename(root)
        finally:
            shutil.rmtree(str(work), ignore_errors=True)
    return root


def xen_version() -> str:
    """Debian version of the Xen packages in use, e.g. '4.17.5+72-g01140da4e8-1'."""
    data = _read_stamp(prefix()) or {}
    return data.get("versions", {}).get("xen-utils-4.17", "unknown")


def lib_dir() -> Path:
    """Directory holding libxenstore.so.4 and the other Xen libraries."""
    root = prefix()
    found = sorted(root.glob("usr/lib/*/libxenstore.so.4"))
    if not found:
        raise Unavailable("libxenstore.so.4 missing under %s: delete that "
                          "directory to re-fetch" % root)
    return found[0].parent


def preload_library() -> Path:
    """Compile ``xenfake/xenfake.c`` into the cache (once per source
    version: the file name carries a hash of source and flags) and return
    the shared library's path."""
    _check_platform()
    source = _FAKE_SOURCE.read_bytes()
    digest = hashlib.sha256(source + repr(_CFLAGS).encode()).hexdigest()[:16]
    cache = cache_dir()
    out = cache / ("libxenfake-%s.so" % digest)
    if out.exists():
        return out
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        raise Unavailable("gcc not found: apt-get install gcc")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / (".%s.%d.tmp" % (out.name, os.getpid()))
    proc = subprocess.run(
        [compiler] + list(_CFLAGS) + ["-o", str(tmp), str(_FAKE_SOURCE), "-ldl"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        if tmp.exists():
            tmp.unlink()
        raise DaemonError("compiling %s failed:\n%s" % (_FAKE_SOURCE, proc.stderr))
    os.replace(str(tmp), str(out))  # atomic: racing builders produce the same file
    # Builds of other versions of xenfake.c stay: another checkout sharing
    # the cache may be about to start a daemon with one of them.
    return out
