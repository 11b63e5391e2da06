"""The README's promises: its quick start runs as shown, CI runs exactly
the test command it gives, and the packaging agrees with the code.

(The examples inside README.rst, docs/ and the docstrings are doctests:
./run-tests collects them, with the fixtures in the root conftest.py.)
"""

import os
import re
import subprocess
import sys

import pyxs

from .support.commands import REPO

QUICKSTART = REPO / "examples" / "quickstart.py"

# What examples/quickstart.py prints after the line saying which XenStore
# it uses; the same against every backend.
QUICKSTART_STEPS = """\
write  /pyxs-quickstart/vm/name = 'demo'
write  /pyxs-quickstart/vm/memory = 512
read   /pyxs-quickstart/vm/name -> 'demo'
read   /pyxs-quickstart/vm/memory -> '512'
ls     /pyxs-quickstart/vm -> ['memory', 'name']
watch  /pyxs-quickstart/vm/state -> event for /pyxs-quickstart/vm/state, token 'state-changed'
transaction committed: state='paused', paused-by='quickstart'
run_in_transaction: counter 0 -> 1
rm     /pyxs-quickstart (cleaned up)
Done.
"""


def run_quickstart(socket_path):
    env = dict(os.environ)
    env["XENSTORED_PATH"] = str(socket_path)
    env.pop("XENSTORED_RUNDIR", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, str(QUICKSTART)], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, "quickstart failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    first, _, rest = proc.stdout.partition("\n")
    return first, rest


def test_quickstart_with_a_real_xenstored(real_daemon):
    first, rest = run_quickstart(real_daemon.socket_path)
    assert first == "Using the xenstored at %s" % real_daemon.socket_path
    assert rest == QUICKSTART_STEPS


def test_quickstart_without_xenstored(tmp_path):
    first, rest = run_quickstart(tmp_path / "no-xenstored-here")
    assert first.startswith("No xenstored to talk to (cannot connect to ")
    started, _, steps = rest.partition("\n")
    assert started.startswith("Started pyxs's in-process XenStore (pyxs.testing) at ")
    assert steps == QUICKSTART_STEPS


def readme_test_command():
    """The command the README gives for running the whole test suite: the
    literal block after the line that introduces it."""
    text = (REPO / "README.rst").read_text()
    match = re.search(r"whole test suite[^\n]*::\n\n((?:    [^\n]*\n)+)", text)
    assert match, "README.rst has no literal block for the whole test suite"
    lines = [line.strip() for line in match.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, "the README should give ONE command, not %r" % lines
    return lines[0]


def test_readme_names_one_test_command():
    assert readme_test_command() == "./run-tests"
    script = REPO / "run-tests"
    assert os.access(str(script), os.X_OK), "run-tests must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_ci_runs_exactly_the_readme_command():
    ci = REPO / ".ci" / "run"
    subprocess.run(["bash", "-n", str(ci)], check=True)
    commands = [line.strip() for line in ci.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    # Setting bash options and going to the repository root are allowed
    # before it; the README's command must be the one thing CI runs.
    assert commands[-1] == "exec " + readme_test_command()
    for line in commands[:-1]:
        assert line.startswith(("set ", "cd ")), "unexpected step in .ci/run: %r" % line


def test_changelog_has_an_entry_for_this_version():
    changelog = (REPO / "CHANGELOG.rst").read_text()
    assert re.search(r"^Version %s\n-+\n" % re.escape(pyxs.__version__), changelog,
                     re.MULTILINE), "CHANGELOG.rst lacks 'Version %s'" % pyxs.__version__


def test_pyproject_takes_the_version_from_the_package():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "pyxs.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", pyxs.__version__)
