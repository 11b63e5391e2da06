"""Xen 4.17's XenStore daemons, run privately for pyxs's tests and
benchmarks.

:func:`start` runs C ``xenstored`` or OCaml ``oxenstored`` from the
packages :mod:`tests.support.xen` unpacked, with the ``xenfake`` preload
library standing in for the hypervisor, in a private run directory, and
returns a :class:`Daemon` once its socket accepts connections. Daemons die
with the process that started them, and those still running at
interpreter exit are stopped.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from . import xen, xen_clients
from .xen import DaemonError, Unavailable, last_lines

#: The two daemon flavours :func:`start` knows.
KINDS = ("xenstored", "oxenstored")

_SOCKADDR_MAX = 107  # sun_path is 108 bytes including the final NUL


def _daemon_binary(kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError("kind must be one of %s, not %r" % (KINDS, kind))
    path = xen.prefix() / xen.XEN_DIR / "bin" / kind
    if not path.exists():
        raise Unavailable("%s missing from the unpacked packages (%s)" % (kind, path))
    return path


_libc = None
_live = set()  # running Daemon objects, stopped at interpreter exit
_live_lock = threading.Lock()


def death_signal_preexec(parent_pid: int):
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
    tests/support/guestring.py and tests/xenfake/README.rst).
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
        """SIGSTOP: the daemon keeps its connections but answers nothing.
        Returns once it has stopped."""
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._await_stopped(True)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`; returns once it runs again."""
        os.kill(self._proc.pid, signal.SIGCONT)
        self._await_stopped(False)

    def _await_stopped(self, stopped: bool, patience: float = 30.0) -> None:
        # A signal takes effect a little after kill() returns (later still
        # on a loaded machine); /proc tells when it has.
        deadline = time.monotonic() + patience
        while True:
            if self._proc.poll() is not None:
                raise DaemonError("%s died (status %s):\n%s"
                                  % (self.kind, self._proc.returncode, self.log_tail()))
            stat = Path("/proc/%d/stat" % self._proc.pid).read_text()
            # The state follows the command name, which may hold ")".
            if (stat.rpartition(")")[2].split()[0] == "T") == stopped:
                return
            if time.monotonic() > deadline:
                raise DaemonError("%s not %s within %gs"
                                  % (self.kind, "stopped" if stopped else "running", patience))
            time.sleep(0.001)

    def client_env(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """Environment for a process using libxenstore (the C clients, or a
        Python 3.11 running xen.lowlevel.xs) to reach this daemon."""
        return xen_clients.client_env(self.socket_path, base)

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
                parts.append("--- %s ---\n%s" % (path.name, last_lines(text, lines)))
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
# Written by pyxs tests/support/daemons.py for a private test daemon.
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
    preload = xen.preload_library()
    libs = xen.lib_dir()
    if rundir is None:
        rundir, owns = _make_rundir(kind, Path(workdir))
    else:
        owns = False

    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(libs) + (":" + old if old else "")
    # Made-up guest domains (tests/support/guestring.py) live here; xenfake binds its
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
            preexec_fn=death_signal_preexec(os.getpid()),
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
