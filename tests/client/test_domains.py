"""pyxs.Client's domain operations, which fail here with each daemon's
own answer."""

import pytest

from ..support import xen_clients
from .helpers import nothing_sent, outcome, raw_outcome


def test_get_domain_path(client):
    assert client.get_domain_path(0) == "/local/domain/0"
    assert client.get_domain_path(7) == "/local/domain/7"
    assert type(client.get_domain_path(7)) is str


def test_is_domain_introduced(client):
    assert client.is_domain_introduced(0) is True
    assert client.is_domain_introduced(4242) is False


# Domains cannot really be introduced here (there is no hypervisor to
# map their pages), so these operations fail, with answers that differ
# between the daemons (C xenstored: INTRODUCE ENOSYS, RELEASE/RESUME/
# SET_TARGET ENOENT; oxenstored: INTRODUCE/RELEASE/RESUME EINVAL,
# SET_TARGET ENOENT).  pyxs must report exactly what the daemon answered.
DOMAIN_OPS = [
    ("introduce_domain", 8, (4242, 1234, 3)),
    ("release_domain", 9, (4242,)),
    ("resume_domain", 18, (4242,)),
    ("set_target", 19, (4242, 4243)),
]


@pytest.mark.parametrize("method,op,args", DOMAIN_OPS, ids=[m for m, _, _ in DOMAIN_OPS])
def test_domain_operations_report_the_daemons_answer(client, xenstore, method, op, args):
    got = outcome(getattr(client, method), *args)
    assert got == raw_outcome(xenstore, op, *args)
    # And the client keeps working.
    assert client.get_domain_path(1) == "/local/domain/1"


@pytest.mark.parametrize("method,op,args", DOMAIN_OPS, ids=[m for m, _, _ in DOMAIN_OPS])
def test_domain_operations_match_xen_lowlevel_xs(client, xenstore, xs_lowlevel, method, op,
                                                   args):
    handle = xen_clients.open_lowlevel_xs(xenstore)
    try:
        try:
            expected = ("ok", getattr(handle, method)(*args))
        except xs_lowlevel.Error as e:
            expected = ("error", e.args[0])
    finally:
        handle.close()
    assert outcome(getattr(client, method), *args) == expected


def test_introduce_dom0_is_refused_before_sending(client, root):
    # Documented: "domid -- a real domain id, (0 is forbidden)".
    with nothing_sent(client):
        with pytest.raises(ValueError):
            client.introduce_domain(0, 1234, 3)


@pytest.mark.parametrize("call", [
    lambda c: c.get_domain_path(-1),
    lambda c: c.is_domain_introduced("x"),
    lambda c: c.release_domain("1\x002"),
    lambda c: c.set_target(1, -2),
    lambda c: c.introduce_domain(5, "mfn", 3),
], ids=["negative", "not-a-number", "nul", "negative-target", "bad-mfn"])
def test_bad_domain_arguments_are_refused_before_sending(client, call):
    with nothing_sent(client):
        with pytest.raises(ValueError):
            call(client)
