"""pyxs.Client's transactions."""

import errno

import pytest

from pyxs import Client, PyXSError

from .helpers import TIMEOUT, errno_of, nothing_sent, other_client


@pytest.fixture
def other(xenstore):
    """A second connection to the daemon, closed afterwards."""
    with other_client(xenstore) as second:
        yield second


def test_transaction_start_and_commit(client, other, root):
    tx_id = client.transaction_start()
    assert type(tx_id) is int and tx_id > 0
    assert client.tx_id == tx_id
    client.write(root + "/tx", "inside")
    assert client.read(root + "/tx") == "inside"
    with pytest.raises(PyXSError) as info:
        other.read(root + "/tx")
    assert errno_of(info) == errno.ENOENT
    client.transaction_end(commit=True)
    assert client.tx_id == 0
    assert other.read(root + "/tx") == "inside"


def test_transaction_end_default_commits(client, root):
    client.transaction_start()
    client.write(root + "/tx", "v")
    client.transaction_end()
    assert client.tx_id == 0
    assert client.read(root + "/tx") == "v"


def test_transaction_abort(client, root):
    client.write(root + "/tx", "before")
    client.transaction_start()
    client.write(root + "/tx", "inside")
    client.write(root + "/tx2", "new")
    client.transaction_end(commit=False)
    assert client.tx_id == 0
    assert client.read(root + "/tx") == "before"
    with pytest.raises(PyXSError) as info:
        client.read(root + "/tx2")
    assert errno_of(info) == errno.ENOENT


def test_transaction_end_without_transaction_sends_nothing(client):
    with nothing_sent(client):
        assert client.transaction_end(commit=True) is None
        assert client.transaction_end(commit=False) is None


def test_transaction_context_commits_on_clean_exit(client, other, root):
    with client.transaction() as t:
        assert t.tx_id > 0
        assert client.tx_id == 0
        t.write(root + "/ctx", "committed")
        with pytest.raises(PyXSError):
            other.read(root + "/ctx")
    assert t.tx_id == 0
    assert other.read(root + "/ctx") == "committed"
    assert client.read(root + "/ctx") == "committed"


def test_transaction_context_aborts_on_exception(client, root):
    client.write(root + "/ctx", "before")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with client.transaction() as t:
            t.write(root + "/ctx", "inside")
            t.write(root + "/ctx-new", "inside")
            raise Boom()
    assert client.read(root + "/ctx") == "before"
    with pytest.raises(PyXSError) as info:
        client.read(root + "/ctx-new")
    assert errno_of(info) == errno.ENOENT
    # The client that made the transaction is still usable.
    client.write(root + "/ctx", "after")
    assert client.read(root + "/ctx") == "after"


def test_transaction_context_explicit_end(client, root):
    # The tutorial's form: transaction_end() inside the block, then exit.
    with client.transaction() as t:
        t.write(root + "/e", "v")
        t.transaction_end(commit=True)
    assert client.read(root + "/e") == "v"
    with client.transaction() as t:
        t.write(root + "/f", "v")
        t.transaction_end(commit=False)
    with pytest.raises(PyXSError):
        client.read(root + "/f")


def test_transaction_while_in_transaction_is_refused(client):
    client.transaction_start()
    try:
        with pytest.raises(PyXSError) as info:
            client.transaction()
        assert errno_of(info) == errno.EALREADY
    finally:
        client.transaction_end(commit=False)


def test_client_with_transaction_flag(xenstore, other, root):
    c = Client(unix_socket_path=xenstore.socket_path, socket_timeout=TIMEOUT, transaction=True)
    try:
        assert c.tx_id > 0
        c.write(root + "/flag", "v")
        with pytest.raises(PyXSError):
            other.read(root + "/flag")
        c.transaction_end(commit=True)
        assert other.read(root + "/flag") == "v"
    finally:
        c.close()


def test_conflicting_commit_raises_eagain(client, other, root):
    client.write(root + "/n", "0")
    t = client.transaction()
    assert t.read(root + "/n") == "0"
    t.write(root + "/n", "1")
    other.write(root + "/n", "2")
    with pytest.raises(PyXSError) as info:
        t.transaction_end(commit=True)
    assert errno_of(info) == errno.EAGAIN
    assert t.tx_id == 0
    assert client.read(root + "/n") == "2"


def test_conflict_in_context_manager_is_never_silent(client, other, root):
    client.write(root + "/n", "0")
    with pytest.raises(PyXSError) as info:
        with client.transaction() as t:
            t.write(root + "/n", t.read(root + "/n") + "1")
            other.write(root + "/n", "rival")
    assert errno_of(info) == errno.EAGAIN
    assert client.read(root + "/n") == "rival"


def test_run_in_transaction_retries_until_commit(client, other, root):
    calls = []

    def increment(t):
        calls.append(t.tx_id)
        value = int(t.read(root + "/counter"))
        if len(calls) < 3:
            other.write(root + "/counter", value + 100)   # conflict
        t.write(root + "/counter", value + 1)
        return value + 1

    client.write(root + "/counter", 1)
    assert client.run_in_transaction(increment) == 202
    assert len(calls) == 3
    assert all(tx for tx in calls)
    assert client.read(root + "/counter") == "202"
    assert client.tx_id == 0


def test_run_in_transaction_gives_up_with_eagain(client, other, root):
    calls = []

    def always_conflicts(t):
        calls.append(1)
        t.write(root + "/c", t.read(root + "/c") + "x")
        other.write(root + "/c", "rival%d" % len(calls))

    client.write(root + "/c", "")
    with pytest.raises(PyXSError) as info:
        client.run_in_transaction(always_conflicts, attempts=3)
    assert errno_of(info) == errno.EAGAIN
    assert len(calls) == 3
    assert client.read(root + "/c") == "rival3"


def test_run_in_transaction_does_not_retry_other_errors(client, root):
    calls = []

    class Boom(Exception):
        pass

    def fails(t):
        calls.append(1)
        t.write(root + "/r", "inside")
        raise Boom()

    with pytest.raises(Boom):
        client.run_in_transaction(fails)
    assert len(calls) == 1
    with pytest.raises(PyXSError):
        client.read(root + "/r")
