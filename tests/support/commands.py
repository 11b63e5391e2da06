"""This checkout's programs, run as child processes by the tests: pytest
with pyxs's plugin, and the emulator's command (``python -m pyxs.testing``).
"""

import contextlib
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

#: The root of the checkout under test.
REPO = Path(__file__).resolve().parents[2]


def checkout_env(**changes):
    """The environment for a child Python that must import this
    checkout's pyxs, with *changes* applied (a value of None removes the
    variable)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_python(*args, timeout=60):
    """Run a child Python with *args* (``-c``, ``-m`` and the like) that
    imports this checkout's pyxs, until it ends; return the
    CompletedProcess, its output and error output as text."""
    return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                          env=checkout_env(), timeout=timeout)


def run_program(program, *args):
    """Run the Python source *program* (with *args* as its ``sys.argv[1:]``)
    in a child Python; return its exit status, output and error output."""
    child = run_python("-c", program, *args)
    return child.returncode, child.stdout, child.stderr


def _plugin_installed():
    try:
        found = entry_points(group="pytest11")
    except TypeError:  # Python < 3.10
        found = entry_points().get("pytest11", [])
    return any(ep.value == "pyxs.pytest_plugin" for ep in found)


def run_pytest(tmp_path, files, *args):
    """Run pytest, with pyxs's plugin, on *files* (name: source) written
    into *tmp_path*, the way a user's own test run would; return the
    CompletedProcess.  When pyxs is not installed (its entry point
    missing) the plugin is named on the command line."""
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    load = [] if _plugin_installed() else ["-p", "pyxs.pytest_plugin"]
    # The child finds no XenStore of ours, and tools/mutate's state is not its.
    env = checkout_env(XENSTORED_PATH=None, XENSTORED_RUNDIR=None, MUTANT_UNDER_TEST=None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + load
        + list(args) + [str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)


@contextlib.contextmanager
def emulator_command(*args):
    """``python -m pyxs.testing *args`` running from this checkout, its
    stdout and stderr piped (text); killed afterwards if the test did not
    end it."""
    proc = subprocess.Popen([sys.executable, "-m", "pyxs.testing"] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=checkout_env())
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
