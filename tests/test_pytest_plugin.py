"""The pytest plugin pyxs ships (pyxs.pytest_plugin), run the way its
users run it: pytest in a subprocess, on test files written here."""


import pytest

from .support.commands import REPO, run_pytest


def assert_passed(proc, count):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%d passed" % count in proc.stdout, proc.stdout


CODE_UNDER_TEST = '''
import pyxs
import pyxs.compat

def name_of_vm(vm):
    # Code that finds XenStore by itself, as a program does.
    with pyxs.Client() as c:
        return c.read("/vm/%d/name" % vm, None)

def legacy_name_of_vm(vm):
    return pyxs.compat.xs().read("", "/vm/%d/name" % vm)
'''

FUNCTION_SCOPE_TESTS = '''
import os
import pytest
from code_under_test import legacy_name_of_vm, name_of_vm

sockets = []

def test_client_with_no_arguments_reaches_the_server(xenstore_server):
    xenstore_server_path = xenstore_server.socket_path
    assert os.environ["XENSTORED_PATH"] == xenstore_server_path
    assert name_of_vm(1) is None
    with __import__("pyxs").Client() as c:
        c.write("/vm/1/name", "web")
    assert xenstore_server.store.dump()["/vm/1/name"][0] == b"web"
    assert name_of_vm(1) == "web"
    assert legacy_name_of_vm(1) == b"web"
    sockets.append(xenstore_server_path)

def test_each_test_has_a_fresh_server(xenstore_client, xenstore_server):
    assert xenstore_client.ls("/") == ["tool"]
    sockets.append(xenstore_server.socket_path)
    assert sockets[0] != sockets[1]

@pytest.mark.parametrize("xenstore_tree", [
    {"/vm/1/name": "db", "/vm/2": {"name": b"mail", "cpus": {"count": "2"}}},
])
def test_the_tree_is_seeded(xenstore_client, xenstore_tree):
    assert name_of_vm(1) == "db"
    assert xenstore_client.read_bytes("/vm/2/name") == b"mail"
    assert xenstore_client.read("/vm/2/cpus/count") == "2"
    assert sorted(xenstore_client.ls("/vm")) == ["1", "2"]

def test_the_environment_is_restored_after_a_test():
    assert "XENSTORED_PATH" not in os.environ
'''

MODULE_TREE_TESTS = '''
import pytest
from code_under_test import name_of_vm

@pytest.fixture
def xenstore_tree():
    return {"/vm/7/name": "from-the-fixture"}

def test_a_module_wide_tree(xenstore_server):
    assert name_of_vm(7) == "from-the-fixture"
'''


def test_fixtures_point_code_under_test_at_the_emulator(tmp_path):
    proc = run_pytest(tmp_path, {"code_under_test.py": CODE_UNDER_TEST,
                                 "test_function_scope.py": FUNCTION_SCOPE_TESTS,
                                 "test_module_tree.py": MODULE_TREE_TESTS})
    assert_passed(proc, 5)


SESSION_SCOPE_TESTS = '''
import pytest

servers = []

@pytest.mark.parametrize("xenstore_tree", [{"/seeded": "1"}])
def test_first(xenstore_client, xenstore_server):
    servers.append(xenstore_server)
    xenstore_client.write("/left/behind", "x")
    xenstore_client.write("/tool/extra", "x")
    xenstore_client.set_permissions("/", ["r0"])

def test_second_sees_a_fresh_tree_on_the_same_server(xenstore_client, xenstore_server):
    assert xenstore_server is servers[0]
    assert xenstore_server.store.dump() == {
        "/": (b"", ["n0"]), "/tool": (b"", ["n0"]), "/tool/xenstored": (b"", ["n0"])}
'''


@pytest.mark.parametrize("how", [["--xenstore-scope", "session"], ["-o", "xenstore_scope=session"]],
                         ids=["option", "ini"])
def test_one_server_for_the_session(tmp_path, how):
    proc = run_pytest(tmp_path, {"test_session.py": SESSION_SCOPE_TESTS}, *how)
    assert_passed(proc, 2)


def test_a_bad_scope_is_refused(tmp_path):
    proc = run_pytest(tmp_path, {"test_x.py": "def test_x(xenstore_server):\n    pass\n"},
                      "-o", "xenstore_scope=module")
    assert proc.returncode != 0
    assert "xenstore_scope must be 'function' or 'session'" in proc.stdout + proc.stderr


UNUSED_PLUGIN_TEST = '''
import sys

def test_the_emulator_is_not_imported():
    assert "pyxs.pytest_plugin" in sys.modules
    assert "pyxs.testing" not in sys.modules
    assert "pyxs._compat" not in sys.modules
'''


def test_the_plugin_costs_nothing_when_unused(tmp_path):
    proc = run_pytest(tmp_path, {"test_unused.py": UNUSED_PLUGIN_TEST})
    assert_passed(proc, 1)


OLD_NAME_TEST = '''
def test_fixture(xenstore_client):
    assert xenstore_client.ls("/") == ["tool"]
'''


@pytest.mark.parametrize("how", ["option", "conftest"])
def test_the_old_plugin_name_still_works(tmp_path, how):
    files = {"test_old.py": OLD_NAME_TEST}
    args = []
    if how == "option":
        args = ["-p", "pyxs.testing.pytest_plugin"]
    else:
        files["conftest.py"] = 'pytest_plugins = ["pyxs.testing.pytest_plugin"]\n'
    proc = run_pytest(tmp_path, files, *args)
    assert_passed(proc, 1)


def test_the_example_in_the_docs(tmp_path):
    example = REPO / "docs" / "pytest-example" / "test_vm_names.py"
    proc = run_pytest(tmp_path, {example.name: example.read_text()})
    assert_passed(proc, 3)
