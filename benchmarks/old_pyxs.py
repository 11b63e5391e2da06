"""pyxs 0.4.1 from PyPI: its virtual environment, and the driver of its
worker process (``processes/worker041.py``)."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

from tests import support
from processes import harness

VERSION = "0.4.1"
WORKER = os.path.join(harness.HERE, "worker041.py")


def venv_python(log):
    """The python of a virtual environment holding pyxs 0.4.1 from PyPI,
    made on first use in the cache directory (under a lock; built aside and
    renamed into place, so a half-made one is never used)."""
    cache = support.cache_dir()
    tag = "py%d%d" % sys.version_info[:2]
    venv = cache / ("bench-venv-pyxs-%s-%s" % (VERSION, tag))
    python = venv / "bin" / "python"
    stamp = venv / ".pyxs-bench-ok"
    if stamp.exists():
        return str(python)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock-bench-venv", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return str(python)
        log("creating a virtual environment with pyxs==%s in %s ..." % (VERSION, venv))
        work = tempfile.mkdtemp(prefix="bench-venv-", dir=str(cache))
        try:
            subprocess.run([sys.executable, "-m", "venv", work], check=True,
                           capture_output=True, timeout=120)
            proc = subprocess.run(
                [os.path.join(work, "bin", "python"), "-m", "pip", "install", "-q",
                 "--disable-pip-version-check", "--no-input", "--timeout", "20",
                 "--retries", "1", "pyxs==%s" % VERSION],
                capture_output=True, text=True, timeout=180, env=harness.helper_env())
            if proc.returncode != 0:
                raise RuntimeError("pip install pyxs==%s failed:\n%s"
                                   % (VERSION, proc.stderr.strip()[-2000:]))
            open(os.path.join(work, ".pyxs-bench-ok"), "w").close()
            if venv.exists():
                shutil.rmtree(str(venv))
            os.rename(work, str(venv))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return str(python)


class OldPyxs:
    """pyxs 0.4.1 in a virtual environment, driven in a subprocess."""

    def __init__(self, python, sock_path):
        self.proc = subprocess.Popen(
            [python, "-I", WORKER, sock_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=harness.helper_env())
        hello = self._answer()
        self.where = hello["pyxs"]

    @property
    def pid(self):
        return self.proc.pid

    def _answer(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the pyxs %s worker died (exit %s)"
                               % (VERSION, self.proc.wait()))
        return json.loads(line)

    def call(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call(cmd="quit")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
