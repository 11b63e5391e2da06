"""Tests written with pyxs's pytest fixtures, as docs/testing.rst shows
them (pyxs's own test suite runs this file)."""

import pytest

import pyxs


def vm_name(vm):
    """The code under test: like any program, it finds XenStore itself."""
    with pyxs.Client() as c:
        return c.read("/vm/%d/name" % vm, None)


def test_a_vm_without_a_name(xenstore_server):
    assert vm_name(1) is None


@pytest.mark.parametrize("xenstore_tree", [
    {"/vm/1/name": "web", "/vm/2": {"name": "db", "memory": "2048"}},
])
def test_names_from_a_seeded_tree(xenstore_server):
    assert vm_name(1) == "web"
    assert vm_name(2) == "db"


def test_a_name_written_by_the_test(xenstore_client):
    xenstore_client["/vm/3/name"] = "mail"
    assert vm_name(3) == "mail"
