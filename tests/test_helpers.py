"""pyxs.exceptions and pyxs.helpers: the exception hierarchy, error(), and
the path, watch path and permission validators.

The validators are compared with oracles written here from the rules
(pyxs 0.3 reference, InvalidPath/InvalidPermission, and the XenStore
protocol), not from the library's code:

* a path is non-empty and uses only ASCII letters, digits and ``-/_@``;
  no ``//``; no trailing ``/`` except the root ``/`` itself; at most 3072
  bytes when absolute (leading ``/``), 2048 bytes when relative; a leading
  ``@`` names a special watch path, never a node;
* a watch path is a valid path or exactly ``@introduceDomain`` or
  ``@releaseDomain``;
* a permission list is non-empty and every entry is one of ``w r b n``
  followed by one or more ASCII digits, and nothing else.
"""

import errno
import os
import re

import pytest
from hypothesis import assume, example, given, settings, strategies as st

import pyxs
from pyxs import exceptions, helpers
from pyxs.exceptions import (ConnectionError, EventsDropped, InvalidOperation, InvalidPath,
                             InvalidPayload, InvalidPermission, PyXSError, UnexpectedPacket)
from pyxs.helpers import error, validate_path, validate_perms, validate_watch_path

FAST = settings(max_examples=150, deadline=None)

ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_DIGITS = "0123456789"
SPECIAL_WATCH_PATHS = ("@introduceDomain", "@releaseDomain")


# Oracles.

#: A path by its grammar: the root, or segments of allowed characters
#: joined by single slashes, with an optional leading slash.
PATH_GRAMMAR = re.compile(r"/|/?[A-Za-z0-9_@-]+(/[A-Za-z0-9_@-]+)*")


def oracle_path(path):
    """True when ``path`` (str) is a valid node path, by the rules."""
    if PATH_GRAMMAR.fullmatch(path) is None or path[0] == "@":
        return False
    return len(path) <= (3072 if path[0] == "/" else 2048)


def oracle_watch_path(path):
    return path in SPECIAL_WATCH_PATHS or oracle_path(path)


def oracle_perm(perm):
    return (len(perm) >= 2 and perm[0] in "wrbn"
            and all(ch in ASCII_DIGITS for ch in perm[1:]))


def oracle_perms(perms):
    return len(perms) > 0 and all(oracle_perm(p) for p in perms)


def path_id(path):
    """A test id for *path* made of plain characters (mutmut selects
    tests by id, and loses ids with backslashes)."""
    shown = "".join(c if c.isascii() and (c.isalnum() or c in "/@_.-") else "%%%x" % ord(c)
                    for c in path[:24])
    return "%s/%d" % (shown, len(path))


def accepts(validator, value, exc):
    """True if ``validator(value)`` passes (and returns value unchanged),
    False if it raises ``exc``; any other outcome fails the test."""
    try:
        result = validator(value)
    except exc:
        return False
    assert result is value or result == value
    return True


# Exceptions.

def test_pyxs_error_is_the_base():
    assert issubclass(PyXSError, Exception)
    for cls in (InvalidOperation, InvalidPayload, InvalidPath, InvalidPermission,
                ConnectionError, UnexpectedPacket):
        assert issubclass(cls, PyXSError), cls


@pytest.mark.parametrize("cls", [InvalidOperation, InvalidPayload, InvalidPath,
                                 InvalidPermission])
def test_input_errors_are_value_errors(cls):
    assert issubclass(cls, ValueError)
    assert issubclass(cls, PyXSError)
    with pytest.raises(ValueError):
        raise cls("bad")


def test_connection_errors():
    assert issubclass(ConnectionError, PyXSError)
    assert not issubclass(ConnectionError, ValueError)
    assert issubclass(UnexpectedPacket, ConnectionError)
    assert not issubclass(UnexpectedPacket, ValueError)


@pytest.mark.parametrize("args", [(), ("a message",), (2, "No such file", "extra"),
                                  ("2", "No such file"), (None, "x"), (2.0, "x")],
                         ids=["none", "message", "three", "text-number", "None", "float"])
def test_errno_is_none_unless_number_and_message(args):
    e = PyXSError(*args)
    assert e.errno is None
    assert e.strerror is None


def test_errno_and_strerror_of_a_daemon_error():
    e = PyXSError(errno.ENOENT, "No such file or directory")
    assert e.errno == errno.ENOENT
    assert e.strerror == "No such file or directory"
    assert InvalidPath("/a b").errno is None


def test_events_dropped_says_how_many_and_what_to_do():
    e = EventsDropped(3, 100)
    assert (e.count, e.limit) == (3, 100)
    # Not a daemon's error, and the connection is fine.
    assert isinstance(e, PyXSError) and not isinstance(e, ConnectionError)
    assert e.errno is None
    assert str(e) == ("3 watch event(s) were dropped: more than 100 were waiting to be taken;"
                      " read again what is watched")


def test_exceptions_are_exported():
    for name in ("PyXSError", "InvalidOperation", "InvalidPayload", "InvalidPath",
                 "InvalidPermission", "ConnectionError", "UnexpectedPacket"):
        assert getattr(exceptions, name) is getattr(pyxs, name)


# error().

def test_error_from_number():
    e = error(22)
    assert type(e) is PyXSError
    assert e.args == (22, "Invalid argument")
    assert e.errno == 22
    assert e.strerror == "Invalid argument"


def test_error_from_name():
    e = error("EINVAL")
    assert type(e) is PyXSError
    assert e.args == (22, "Invalid argument")
    assert e.errno == 22


def test_error_name_and_number_agree():
    assert error("EINVAL").args == error(22).args == error(errno.EINVAL).args


@pytest.mark.parametrize("name", ["EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT",
                                  "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS",
                                  "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG",
                                  "EPERM"])
def test_error_names_the_daemons_send(name):
    number = getattr(errno, name)
    e = error(name)
    assert e.errno == number
    assert e.args == (number, os.strerror(number))


@FAST
@given(st.sampled_from(sorted(errno.errorcode.items())))
def test_error_every_errno(item):
    number, name = item
    assert error(name).args == (number, os.strerror(number))
    assert error(number).args == (number, os.strerror(number))


def test_error_is_raisable_and_catchable():
    with pytest.raises(PyXSError) as info:
        raise error("ENOENT")
    assert info.value.errno == errno.ENOENT


def test_error_unknown_name_is_einval():
    # libxenstore maps an error name it does not know to EINVAL.
    assert error("ENOTANERROR").errno == errno.EINVAL
    assert error(b"ENOTANERROR").errno == errno.EINVAL
    assert error(b"\xffENOENT").errno == errno.EINVAL


def test_error_names_as_bytes_from_the_wire():
    assert error(b"ENOENT").args == (errno.ENOENT, os.strerror(errno.ENOENT))


def test_oxenstored_equota_is_enospc():
    assert error("EQUOTA").args == (errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert error(b"EQUOTA").errno == errno.ENOSPC


# Bytes-like and non-text input.

BYTES_LIKE = [bytearray, memoryview]


@pytest.mark.parametrize("kind", BYTES_LIKE, ids=lambda k: k.__name__)
def test_bytes_like_paths(kind):
    assert helpers.encode_path(kind(b"/local/domain")) == b"/local/domain"
    assert type(helpers.encode_path(kind(b"/a"))) is bytes
    assert helpers.encode_watch_path(kind(b"@releaseDomain")) == b"@releaseDomain"
    with pytest.raises(InvalidPath):
        helpers.encode_path(kind(b"/a//b"))


@pytest.mark.parametrize("path", [5, None, ["/a"], 1.5, object()],
                         ids=["int", "None", "list", "float", "object"])
def test_non_text_paths_are_a_type_error(path):
    for encode, what in ((helpers.encode_path, "path"), (helpers.encode_watch_path, "watch path"),
                         (validate_path, "path"), (helpers.encode_token, "token")):
        with pytest.raises(TypeError) as info:
            encode(path)
        assert str(info.value) == "%s must be str or bytes, not %s" % (what, type(path).__name__)


@pytest.mark.parametrize("path", ["/a b", b"/a//b", "@introduceDomain"],
                         ids=["str", "bytes", "special"])
def test_invalid_path_carries_the_path(path):
    with pytest.raises(InvalidPath) as info:
        helpers.encode_path(path)
    assert str(info.value).startswith("invalid path %r: " % (path,))


def test_str_paths_keep_lone_surrogates_as_their_bytes():
    # A path read back from XenStore as text decodes to what it was.
    assert helpers.to_bytes("/a\udcff", "path") == b"/a\xff"
    assert helpers.to_text(b"/a\xff") == "/a\udcff"
    with pytest.raises(InvalidPath):
        validate_path("/a\udcff")


@pytest.mark.parametrize("value, expected", [
    (b"x\x00\xff", b"x\x00\xff"), (bytearray(b"x\xff"), b"x\xff"),
    (memoryview(b"x\xff"), b"x\xff"), ("\u00e9", b"\xc3\xa9"), ("a\udcff", b"a\xff"),
    (42, b"42"), (-7, b"-7"), (3.5, b"3.5"), (None, b"None"), (True, b"True"),
    ([1, 2], b"[1, 2]"),
], ids=["bytes", "bytearray", "memoryview", "str", "surrogate", "int", "negative",
        "float", "None", "bool", "list"])
def test_encode_value(value, expected):
    raw = helpers.encode_value(value)
    assert type(raw) is bytes
    assert raw == expected


@pytest.mark.parametrize("token, expected", [("t", b"t"), (b"t\xff", b"t\xff"),
                                             (bytearray(b"t"), b"t"), ("", b"")])
def test_encode_token(token, expected):
    assert helpers.encode_token(token) == expected


@pytest.mark.parametrize("token", ["a\x00b", b"\x00", bytearray(b"t\x00")])
def test_token_with_nul_is_refused(token):
    with pytest.raises(InvalidPayload) as info:
        helpers.encode_token(token)
    assert str(info.value) == "a watch token cannot contain a NUL byte: %r" % (token,)


@pytest.mark.parametrize("number, expected", [
    (0, b"0"), (5, b"5"), (2 ** 32, b"4294967296"), ("5", b"5"), ("0012", b"0012"),
    (b"7", b"7"),
], ids=["zero", "five", "big", "text", "text-zeros", "bytes"])
def test_encode_number(number, expected):
    assert helpers.encode_number(number, "domid") == expected


@pytest.mark.parametrize("number", [-1, "-1", "", b"", "5 ", "+5", "0x5", "\u0665", True,
                                    False, 5.0, None, [5]],
                         ids=["negative", "negative-text", "empty", "empty-bytes", "space",
                              "plus", "hex", "arabic-digit", "True", "False", "float",
                              "None", "list"])
def test_encode_number_refuses(number):
    with pytest.raises(InvalidPayload) as info:
        helpers.encode_number(number, "domid")
    assert str(info.value) == "domid must be a non-negative integer, not %r" % (number,)


@pytest.mark.parametrize("perm", [5, None, 1.5, ["r5"], "x5", b"r5x"],
                         ids=["int", "None", "float", "list", "bad-letter", "bad-bytes"])
def test_bad_permission_entries_are_named_in_the_error(perm):
    with pytest.raises(InvalidPermission) as info:
        validate_perms(["b0", perm])
    assert info.value.args == (perm,)


@pytest.mark.parametrize("perms", ["b0", b"b0"], ids=["str", "bytes"])
def test_one_string_is_not_a_permission_list(perms):
    with pytest.raises(InvalidPermission) as info:
        validate_perms(perms)
    assert str(info.value) == "permissions must be a list of entries, not %r" % (perms,)


def test_encode_perms():
    assert helpers.encode_perms(["b0", b"r5", bytearray(b"w7"), memoryview(b"n9")]) == \
        [b"b0", b"r5", b"w7", b"n9"]
    assert helpers.encode_perms(p for p in ["n0", "r1"]) == [b"n0", b"r1"]
    with pytest.raises(InvalidPermission) as info:
        helpers.encode_perms(iter([]))
    assert str(info.value) == "a permission list needs at least the owner entry"


# validate_path.

VALID_PATHS = [
    "/",
    "/local",
    "/local/domain/0/name",
    "local/domain",
    "name",
    "a",
    "/A-Z_a-z/0-9",
    "/a@b",
    "device/vif/0/mac",
    "/" + "a" * 3071,                   # absolute: exactly 3072 bytes
    ("/" + "/".join(["ab"] * 1023) + "x" * 3),  # 3072 bytes in 1023 segments
    "a" * 2048,                         # relative: exactly 2048 bytes
    "r/" + "b" * 2046,                  # relative, 2048 bytes, with a slash
]

INVALID_PATHS = [
    "",                       # empty
    "/a/",                    # trailing slash
    "a/",
    "//",
    "//a",
    "/a//b",                  # double slash
    "/a b",                   # space
    "/a.b",                   # dot
    "/a:b",
    "/a\\b",
    "/a\x00",                 # NUL (trailing)
    "/a\x00b",                # NUL (inside)
    "\x00",
    "/a\n",                   # trailing newline
    "/a\nb",
    "\n",
    "/a\t",
    "/é",                     # non-ASCII letter
    "/ß",
    "/a\u0665",               # ARABIC-INDIC DIGIT FIVE (str.isdigit() is True)
    "/\u0661\u0662",
    "/\uff11",                # FULLWIDTH DIGIT ONE
    "/a\u00b2",               # SUPERSCRIPT TWO
    "@foo",                   # special paths are not node paths
    "@introduceDomain",
    "@releaseDomain",
    "/" + "a" * 3072,         # absolute: 3073 bytes
    "a" * 2049,               # relative: 2049 bytes
    "r/" + "b" * 2047,        # relative: 2049 bytes with a slash
    "a" * 3072,               # relative paths do not get the absolute limit
]


@pytest.mark.parametrize("path", VALID_PATHS, ids=lambda p: path_id(p))
def test_valid_paths(path):
    assert validate_path(path) == path
    raw = path.encode("ascii")
    assert validate_path(raw) == raw


@pytest.mark.parametrize("path", INVALID_PATHS, ids=lambda p: path_id(p))
def test_invalid_paths(path):
    with pytest.raises(InvalidPath):
        validate_path(path)


@pytest.mark.parametrize("path", INVALID_PATHS, ids=lambda p: path_id(p))
def test_invalid_paths_as_bytes(path):
    with pytest.raises(InvalidPath):
        validate_path(path.encode("utf-8"))


def test_paths_found_valid_are_remembered_within_bounds():
    """encode_path() remembers the str paths it found valid; what it
    answers from memory is what it would compute, the memory stays
    bounded, and invalid paths are never remembered."""
    helpers._checked_paths.clear()
    for path in VALID_PATHS + ["/local/domain/7/name"] * 2:
        assert helpers.encode_path(path) == path.encode("ascii")
    for path in INVALID_PATHS:
        for _ in range(2):
            with pytest.raises(InvalidPath):
                helpers.encode_path(path)
    assert all(helpers._VALID_PATH.fullmatch(raw) and raw.decode() == path
               for path, raw in helpers._checked_paths.items())
    # Remembered: the same bytes come back, not encoded again.
    path = "/local/domain/7/name"
    assert helpers.encode_path(path) is helpers.encode_path(path)
    for i in range(helpers._CHECKED_PATHS_MAX + 10):
        helpers.encode_path("/n%d" % i)
        assert 0 < len(helpers._checked_paths) <= helpers._CHECKED_PATHS_MAX
    assert all(len(path) <= helpers._CHECKED_PATH_LENGTH for path in helpers._checked_paths)
    longest = "/" + "a" * (helpers._CHECKED_PATH_LENGTH - 1)
    for path in (longest, longest + "a"):
        assert helpers.encode_path(path) == path.encode("ascii")
    assert longest in helpers._checked_paths and longest + "a" not in helpers._checked_paths


def test_invalid_bytes_path():
    for raw in (b"/a\xff", b"/\xc3\xa9", b"/a\x80b", b"/a\x00", b"/a\n"):
        with pytest.raises(InvalidPath):
            validate_path(raw)


def test_validate_path_returns_its_argument():
    path = "/local/domain/0"
    assert validate_path(path) is path
    raw = b"/local/domain/0"
    assert validate_path(raw) is raw


def test_invalid_path_is_a_value_error():
    with pytest.raises(ValueError):
        validate_path("/a//b")


@pytest.mark.parametrize("prefix,limit", [("/", 3072), ("", 2048), ("x/", 2048)])
def test_path_length_boundaries(prefix, limit):
    for length in range(limit - 3, limit + 4):
        path = prefix + "z" * (length - len(prefix))
        assert len(path) == length
        if length <= limit:
            assert validate_path(path) == path
        else:
            with pytest.raises(InvalidPath):
                validate_path(path)


# validate_path against an oracle.

#: Characters a path may hold, and some it may not.
PATH_ALPHABET = st.sampled_from(
    list("abcXYZ019-_@/") * 4 +
    list(" .:\\\x00\n\t\r~*é\u0665\uff11\u00b2")
)

short_paths = st.text(PATH_ALPHABET, max_size=24)


@st.composite
def long_paths(draw):
    """Paths whose lengths are close to the 2048 and 3072 limits."""
    absolute = draw(st.booleans())
    limit = 3072 if absolute else 2048
    length = draw(st.integers(min_value=limit - 3, max_value=limit + 3))
    head = "/" if absolute else draw(st.sampled_from(["", "x/", "@"]))
    body = draw(st.text(PATH_ALPHABET, max_size=6))
    filler = "q" * max(length - len(head) - len(body), 0)
    return head + filler + body


paths = st.one_of(short_paths, long_paths(), st.text(max_size=12))


@FAST
@given(paths)
@example("/")
@example("")
@example("/a/")
@example("@introduceDomain")
def test_validate_path_matches_oracle(path):
    expected = oracle_path(path)
    assert accepts(validate_path, path, InvalidPath) == expected, repr(path)


@FAST
@given(paths)
def test_validate_path_bytes_matches_oracle(path):
    raw = path.encode("utf-8", "surrogatepass")
    assert accepts(validate_path, raw, InvalidPath) == oracle_path(path), repr(raw)


@FAST
@given(st.lists(st.text(st.sampled_from(ASCII_LETTERS + ASCII_DIGITS + "-_@"),
                        min_size=1, max_size=10), min_size=1, max_size=8),
       st.booleans())
def test_well_formed_paths_are_valid(segments, absolute):
    assume(not segments[0].startswith("@") or absolute)
    path = ("/" if absolute else "") + "/".join(segments)
    assert validate_path(path) == path


# validate_watch_path.

@pytest.mark.parametrize("wpath", ["@introduceDomain", "@releaseDomain",
                                   b"@introduceDomain", b"@releaseDomain",
                                   "/", "/local/domain", "device/vif", b"/a/b"])
def test_valid_watch_paths(wpath):
    assert validate_watch_path(wpath) == wpath


@pytest.mark.parametrize("wpath", ["@", "@foo", "@introduceDomainX", "@introducedomain",
                                   "@introduceDomain/x", "@releaseDomain\n",
                                   "@releaseDomain\x00", "x@introduceDomain/",
                                   "", "/a//b", "/a/", "/a b", "/\u0665", "a" * 2049])
def test_invalid_watch_paths(wpath):
    with pytest.raises(InvalidPath):
        validate_watch_path(wpath)


@FAST
@given(st.one_of(paths, st.sampled_from(SPECIAL_WATCH_PATHS),
                 st.builds(lambda s, t: s + t, st.sampled_from(SPECIAL_WATCH_PATHS),
                           st.text(PATH_ALPHABET, max_size=3))))
def test_validate_watch_path_matches_oracle(wpath):
    assert accepts(validate_watch_path, wpath, InvalidPath) == oracle_watch_path(wpath), \
        repr(wpath)


# validate_perms.

@pytest.mark.parametrize("perms", [["b0"], ["n0", "r5"], ["w1", "r2", "b3", "n4"],
                                   ["r0123"], ["n4294967295"], [b"r5"], [b"n0", "b7"],
                                   ("n0", "r5")])
def test_valid_perms(perms):
    assert validate_perms(perms) == perms


@pytest.mark.parametrize("perms", [
    [],                # at least the owner entry
    ["r5x"],           # trailing junk
    ["x5"],            # unknown letter
    ["r"],             # no domid
    ["R5"],            # upper case
    ["r\u0665"],       # Arabic-Indic digit
    ["r\uff15"],       # fullwidth digit
    ["r5\n"],          # trailing newline
    ["r5\x00"],
    [" r5"],
    ["r 5"],
    ["r-5"],
    ["r+5"],
    ["rw5"],
    ["5"],
    [""],
    ["b0", "r5x"],     # any bad entry spoils the list
    ["b0", ""],
    [b"r5x"],
    [b"r\xd9\xa5"],
])
def test_invalid_perms(perms):
    with pytest.raises(InvalidPermission):
        validate_perms(perms)


def test_invalid_permission_is_a_value_error():
    with pytest.raises(ValueError):
        validate_perms(["x5"])


def test_validate_perms_returns_its_argument():
    perms = ["n0", "r5"]
    assert validate_perms(perms) is perms


PERM_ALPHABET = st.sampled_from(list("wrbn0123456789") * 3 + list("WRBNx \n-+\x00\u0665"))
perm_entries = st.one_of(
    st.text(PERM_ALPHABET, max_size=6),
    st.builds(lambda letter, digits: letter + digits, st.sampled_from("wrbn"),
              st.text(st.sampled_from(ASCII_DIGITS), min_size=1, max_size=5)),
)


@FAST
@given(st.lists(perm_entries, max_size=5))
def test_validate_perms_matches_oracle(perms):
    assert accepts(validate_perms, perms, InvalidPermission) == oracle_perms(perms), repr(perms)


@FAST
@given(st.lists(perm_entries, max_size=5))
def test_validate_perms_bytes_matches_oracle(perms):
    raw = [p.encode("utf-8") for p in perms]
    assert accepts(validate_perms, raw, InvalidPermission) == oracle_perms(perms), repr(raw)
