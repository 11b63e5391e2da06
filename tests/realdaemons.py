"""Run Xen 4.17's real XenStore daemons for pyxs's tests and benchmarks.

Debian 12 packages Xen 4.17: the C daemon ``xenstored``, the OCaml daemon
``oxenstored``, the C command-line clients (``xenstore-read`` and friends)
and the C Python extension ``xen.lowlevel.xs``. This module fetches those
packages with ``apt-get download`` (nothing is installed system-wide),
unpacks them into a cache directory, builds a small LD_PRELOAD library
(``xenfake/xenfake.c``) that stands in for the hypervisor, and starts
daemons in private run directories.

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

Standard library only; Python 3.9+.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "KINDS",
    "C_CLIENTS",
    "PACKAGES",
    "Unavailable",
    "WrongPython",
    "DaemonError",
    "Daemon",
    "cache_dir",
    "prefix",
    "lib_dir",
    "xen_version",
    "preload_library",
    "start",
    "c_client",
    "run_c_client",
    "load_lowlevel_xs",
    "open_lowlevel_xs",
    "raw_request",
    "require",
    "required",
]

#: The two daemon flavours :func:`start` knows.
KINDS = ("xenstored", "oxenstored")

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

_XEN_DIR = "usr/lib/xen-4.17"
_STAMP = ".pyxs-stamp"
_HERE = Path(__file__).resolve().parent
_FAKE_SOURCE = _HERE / "xenfake" / "xenfake.c"
_CFLAGS = ("-O2", "-shared", "-fPIC")
_SOCKADDR_MAX = 107  # sun_path is 108 bytes including the final NUL

# Wire constants used by raw_request() (see the protocol spec).
XS_DIRECTORY = 1
XS_READ = 2
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_ERROR = 16
_HEADER = struct.Struct("=IIII")  # type, req_id, tx_id, len; native endian


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


# --------------------------------------------------------------------------
# Skip-or-fail policy
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Packages
# --------------------------------------------------------------------------

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


def _tail(text: Union[str, bytes], lines: int = 15) -> str:
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
                "(is Debian's archive reachable?):\n" + _tail(upd.stderr)
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
            % (" ".join(PACKAGES), hint, _tail(proc.stderr))
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


def _daemon_binary(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError("kind must be one of %s, not %r" % (KINDS, kind))
    path = prefix() / _XEN_DIR / "bin" / kind
    if not path.exists():
        raise Unavailable("%s missing from the unpacked packages (%s)" % (kind, path))
    return path


# --------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------

_libc = None
_live = set()  # running Daemon objects, stopped at interpreter exit
_live_lock = threading.Lock()


def _death_signal_preexec(parent_pid: int):
    """preexec_fn making the child get SIGKILL when its parent dies, so a
    killed test run leaves no daemon behind.

    Caveat of PR_SET_PDEATHSIG: "parent" is the *thread* that forked. Start
    daemons from the main thread (or a thread that outlives them).
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    prctl = _libc.prctl
    PR_SET_PDEATHSIG = 1

    def preexec():
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already gone
            os._exit(1)

    return preexec


class Daemon:
    """One running XenStore daemon (see :func:`start`).

    Attributes: ``kind``, ``socket_path`` (str), ``pid``, ``rundir`` (Path),
    ``log_path`` (its stdout/stderr), ``trace_path`` (or None),
    ``guest_dir`` (Path: where made-up guest domains live, see
    guestring.py and xenfake/README.rst).
    """

    def __init__(self, kind, proc, socket_path, rundir, log_path, trace_path,
                 extra_logs, owns_rundir):
        self.kind = kind
        self.socket_path = str(socket_path)
        self.rundir = Path(rundir)
        self.log_path = Path(log_path)
        self.trace_path = Path(trace_path) if trace_path else None
        self._proc = proc
        self._extra_logs = [Path(p) for p in extra_logs]
        self._owns_rundir = owns_rundir
        self.guest_dir = self.rundir / "guests"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        """True while the daemon process has not exited."""
        return self._proc.poll() is None

    @property
    def returncode(self) -> Optional[int]:
        return self._proc.poll()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the daemon (SIGTERM, then SIGKILL after ``timeout``) and
        reap it. Safe to call more than once."""
        if self._proc.poll() is None:
            try:
                self._proc.terminate()
                os.kill(self._proc.pid, signal.SIGCONT)  # in case it was paused
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with _live_lock:
            _live.discard(self)
        if self._owns_rundir:
            shutil.rmtree(str(self.rundir), ignore_errors=True)
            self._owns_rundir = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the daemon. For SIGKILL, also wait until it is
        gone, so its sockets are closed when this returns."""
        if self._proc.poll() is not None:
            return
        os.kill(self._proc.pid, sig)
        if sig == signal.SIGKILL:
            self._proc.wait()
            with _live_lock:
                _live.discard(self)

    def pause(self) -> None:
        """SIGSTOP: the daemon keeps its connections but answers nothing."""
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        os.kill(self._proc.pid, signal.SIGCONT)

    def client_env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """Environment for a process using libxenstore (the C clients, or a
        Python 3.11 running xen.lowlevel.xs) to reach this daemon."""
        return client_env(self.socket_path, base)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the daemon's output, own log and trace, for
        failure messages."""
        parts = []
        for path in [self.log_path] + self._extra_logs + (
                [self.trace_path] if self.trace_path else []):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append("--- %s ---\n%s" % (path.name, _tail(text, lines)))
        return "\n".join(parts) or "(no output)"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def __repr__(self):
        state = "running" if self.alive() else "exited %s" % self.returncode
        return "<Daemon %s pid=%d %s %s>" % (self.kind, self.pid, state, self.socket_path)


def _stop_all_at_exit():
    with _live_lock:
        daemons = list(_live)
    for daemon in daemons:
        try:
            daemon.stop(timeout=3)
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


def _make_rundir(kind: str, workdir: Path) -> Tuple[Path, bool]:
    """A fresh private run directory under ``workdir``; falls back to a
    short one in /tmp when socket paths would be too long for AF_UNIX, or
    when workdir lies under /run (oxenstored hides /run behind a mount)."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    longest = len(str(workdir)) + len("/%s-xxxxxxxx/run/xenstored/socket" % kind)
    under_run = workdir == Path("/run") or Path("/run") in workdir.parents
    if longest <= _SOCKADDR_MAX and not under_run:
        return Path(tempfile.mkdtemp(prefix=kind + "-", dir=str(workdir))), False
    return Path(tempfile.mkdtemp(prefix="pyxs-%s-" % kind, dir="/tmp")), True


_OXENSTORED_CONF = """\
# Written by pyxs tests/realdaemons.py for a private test daemon.
pid-file = {d}/oxenstored.pid
persistent = false
xenstored-kva = /proc/xen/xsd_kva
xenstored-port = /proc/xen/xsd_port
xenstored-log-file = {d}/xenstored.log
xenstored-log-level = info
access-log-file = {d}/access.log
access-log-nb-files = 1
"""

# Runs inside `unshare -m` (a private mount namespace): oxenstored binds the
# fixed path /var/run/xenstored/socket, so D/run is mounted over /run. `exec`
# keeps the pid, so the Popen pid is oxenstored's.
_OXENSTORED_SH = ('mount --bind "$1/run" /run && '
                  'exec "$2" --config-file "$1/oxenstored.conf" --no-fork')


_private_mounts: Optional[str] = None   # "" once known to work, else why not


def _check_private_mounts() -> None:
    """Raise :class:`Unavailable` unless this machine lets a process make
    a private mount namespace and bind-mount in it, as oxenstored's start
    needs (root with CAP_SYS_ADMIN: not an unprivileged container)."""
    global _private_mounts
    if _private_mounts is None:
        if shutil.which("unshare") is None:
            _private_mounts = "unshare not found: apt-get install util-linux"
        else:
            with tempfile.TemporaryDirectory() as scratch:
                probe = subprocess.run(
                    ["unshare", "--mount", "--propagation", "private",
                     "sh", "-c", 'mount --bind "$1" "$1"', "sh", scratch],
                    capture_output=True, text=True, timeout=30)
            _private_mounts = "" if probe.returncode == 0 else (
                "cannot give oxenstored a private mount namespace (run the tests "
                "as root with CAP_SYS_ADMIN, not in an unprivileged container): "
                "unshare --mount exited with %d: %s"
                % (probe.returncode, probe.stderr.strip()))
    if _private_mounts:
        raise Unavailable(_private_mounts)


def start(kind: str, workdir: Union[str, Path], trace: bool = False,
          timeout: float = 20.0, extra_args: Sequence[str] = (),
          rundir: Optional[Path] = None) -> Daemon:
    """Start a fresh ``kind`` daemon ("xenstored" or "oxenstored") with a
    private run directory under ``workdir``; return once its socket
    accepts connections.

    ``trace=True`` makes C xenstored write a trace of every message to
    ``rundir/trace.log`` (oxenstored always writes ``access.log``).
    ``rundir`` reuses the run directory of an earlier daemon, which has
    exited: the new one listens on the same socket path, as a daemon
    restarted on a host does (see :func:`restart`).
    Raises :class:`Unavailable` when this machine cannot run it and
    :class:`DaemonError` (with the daemon's log) when it fails to start.
    """
    binary = _daemon_binary(kind)
    preload = preload_library()
    libs = lib_dir()
    if rundir is None:
        rundir, owns = _make_rundir(kind, Path(workdir))
    else:
        owns = False

    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(libs) + (":" + old if old else "")
    # Made-up guest domains (guestring.py) live here; xenfake binds its
    # event-channel socket in it.
    (rundir / "guests").mkdir(exist_ok=True)
    env["XENFAKE_GUESTS"] = str(rundir / "guests")
    trace_path = None
    extra_logs = []

    if kind == "xenstored":
        socket_path = rundir / "socket"
        env["XENSTORED_RUNDIR"] = str(rundir)  # also where its tdb file lives
        env["XENSTORED_PATH"] = str(socket_path)
        argv = [str(binary), "--no-fork"]
        if trace:
            trace_path = rundir / "trace.log"
            argv += ["-T", str(trace_path)]
    else:
        if os.geteuid() != 0:
            raise Unavailable(
                "oxenstored needs root: its socket path is fixed at "
                "/var/run/xenstored/socket, so it runs in a private mount "
                "namespace (unshare -m + mount --bind); run the tests as root"
            )
        _check_private_mounts()
        (rundir / "run" / "xenstored").mkdir(parents=True, exist_ok=True)
        (rundir / "oxenstored.conf").write_text(_OXENSTORED_CONF.format(d=rundir))
        socket_path = rundir / "run" / "xenstored" / "socket"
        extra_logs = [rundir / "xenstored.log"]
        argv = ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", _OXENSTORED_SH, "sh", str(rundir), str(binary)]
    argv += list(extra_args)

    log_path = rundir / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=str(rundir), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_death_signal_preexec(os.getpid()),
        )
    daemon = Daemon(kind, proc, socket_path, rundir, log_path, trace_path,
                    extra_logs, owns)
    with _live_lock:
        _live.add(daemon)
    try:
        _wait_for_socket(daemon, timeout)
    except BaseException:
        daemon._owns_rundir = False  # keep the logs for a post-mortem
        daemon.stop(timeout=3)
        raise
    return daemon


def restart(daemon: Daemon) -> Daemon:
    """Kill *daemon* and start a fresh one of the same kind on the same
    socket path (with an empty tree, as after a host's daemon restart).
    The caller stops the new daemon; the old one's run directory is kept
    until then."""
    daemon.kill()
    owns, daemon._owns_rundir = daemon._owns_rundir, False
    daemon.stop()
    fresh = start(daemon.kind, daemon.rundir.parent, rundir=daemon.rundir)
    fresh._owns_rundir = owns
    return fresh


def _wait_for_socket(daemon: Daemon, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if not daemon.alive():
            # Whether the machine allows oxenstored's private mount was
            # checked beforehand: a death here is the daemon's failure.
            raise DaemonError("%s exited with status %s before its socket "
                              "was ready:\n%s" % (daemon.kind, daemon.returncode,
                                                  daemon.log_tail()))
        if os.path.exists(daemon.socket_path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(1.0)
                sock.connect(daemon.socket_path)
                return
            except OSError as exc:
                last_error = exc
            finally:
                sock.close()
        time.sleep(0.02)
    raise DaemonError("%s (pid %d) did not accept connections on %s within "
                      "%.0f s (last error: %s):\n%s"
                      % (daemon.kind, daemon.pid, daemon.socket_path, timeout,
                         last_error, daemon.log_tail()))


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------

def c_client(name: str) -> List[str]:
    """argv prefix for one of Xen's C clients, e.g. ``c_client("xenstore-read")``.
    Run it with a daemon's :meth:`Daemon.client_env`."""
    if name not in C_CLIENTS:
        raise ValueError("unknown C client %r (known: %s)" % (name, ", ".join(C_CLIENTS)))
    path = prefix() / "usr" / "bin" / name
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
    env["LD_LIBRARY_PATH"] = str(lib_dir()) + (":" + old if old else "")
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
    ``xs()`` (or use :func:`open_lowlevel_xs`).

    The extension is built for CPython 3.11 only; other versions raise
    :class:`Unavailable`.
    """
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        raise WrongPython(
            "xen.lowlevel.xs from Debian 12 is built for CPython 3.11 only, "
            "this is %s %d.%d: run these tests with python3.11"
            % (sys.implementation.name, sys.version_info[0], sys.version_info[1])
        )
    root = prefix()
    libs = lib_dir()
    pydir = root / _XEN_DIR / "lib" / "python"
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


def open_lowlevel_xs(daemon: Daemon, **kwargs):
    """Return a ``xen.lowlevel.xs.xs(**kwargs)`` handle connected to
    ``daemon``: sets XENSTORED_PATH only while the handle is opened."""
    module = load_lowlevel_xs()
    saved = os.environ.get("XENSTORED_PATH")
    os.environ["XENSTORED_PATH"] = daemon.socket_path
    try:
        return module.xs(**kwargs)
    finally:
        if saved is None:
            del os.environ["XENSTORED_PATH"]
        else:
            os.environ["XENSTORED_PATH"] = saved


def raw_request(target: Union[Daemon, str], op: int, payload: bytes,
                tx_id: int = 0, req_id: int = 0,
                timeout: float = 5.0) -> Tuple[int, bytes]:
    """Send one request on a new connection, independently of pyxs, and
    return ``(reply_type, reply_payload)``. ``target`` is a Daemon or a
    socket path. Raises OSError/socket.timeout on connection problems."""
    path = str(getattr(target, "socket_path", target))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(_HEADER.pack(op, req_id, tx_id, len(payload)) + payload)
        header = _recv_exact(sock, _HEADER.size)
        rtype, _rid, _tx, length = _HEADER.unpack(header)
        return rtype, _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(errno.ECONNRESET, "daemon closed the connection")
        data += chunk
    return data
