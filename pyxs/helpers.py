"""Validation and conversion of what callers hand to XenStore.

Each public ``validate_*`` function raises the matching exception from
:mod:`pyxs.exceptions` and otherwise returns its argument unchanged.  The
``encode_*`` functions behind them are what :class:`~pyxs.client.Client`
uses: they validate and turn the argument into the bytes that go on the
wire, so a request is fully checked before any of it is sent.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Dict, Iterable, List, Sequence, Union

from ._internal import client_errno
from .exceptions import InvalidPath, InvalidPayload, InvalidPermission, PyXSError

__all__ = ["error", "validate_path", "validate_watch_path", "validate_perms"]

#: What callers may pass where XenStore expects a string.
Text = Union[str, bytes]

#: Longest absolute and relative paths the daemons accept.
ABSOLUTE_PATH_MAX = 3072
RELATIVE_PATH_MAX = 2048

#: Watch paths that name events rather than nodes.
SPECIAL_PATHS = frozenset([b"@introduceDomain", b"@releaseDomain"])

# fullmatch, so that a trailing newline cannot slip past a ``$``.
_PATH_CHARS = re.compile(rb"[A-Za-z0-9\-/_@]+")
# Every rule of encode_path but the length in one pattern: "/", or
# segments of path characters joined by single slashes, with a leading
# slash or else a first character other than "@".  Checked first, as
# almost every path passes.
_VALID_PATH = re.compile(rb"/|(?:/[A-Za-z0-9\-_@]+)+|[A-Za-z0-9\-_][A-Za-z0-9\-_@]*"
                         rb"(?:/[A-Za-z0-9\-_@]+)*")
# A character no path may hold, in a path given as str and as bytes.
_NOT_PATH_CHAR = re.compile(r"[^A-Za-z0-9\-/_@]")
_NOT_PATH_BYTE = re.compile(rb"[^A-Za-z0-9\-/_@]")
_PERMISSION = re.compile(rb"[wrbn][0-9]+")

# Paths given as str that encode_path() found valid, with their wire form:
# programs use the same paths again and again, and a lookup costs a fifth
# of a check.  Only paths of usual lengths are kept, and it is emptied
# when full: at most about half a megabyte, without the bookkeeping of
# an LRU cache.
_checked_paths: Dict[str, bytes] = {}
_CHECKED_PATHS_MAX = 1024
_CHECKED_PATH_LENGTH = 256


def error(code: Union[int, str, bytes]) -> PyXSError:
    """Build the :exc:`~pyxs.exceptions.PyXSError` for an error number or
    for an error name as XenStore sends it.

    >>> error(22)
    PyXSError(22, 'Invalid argument')
    >>> error("EINVAL")
    PyXSError(22, 'Invalid argument')

    oxenstored's non-standard ``EQUOTA`` means the same as C xenstored's
    ``ENOSPC`` and becomes that; any other unknown name becomes
    ``EINVAL``, as in Xen's own client library.

    :param code: an errno number, or a name such as ``"ENOENT"``.
    :returns: the exception, to be raised by the caller.
    """
    if isinstance(code, bytes):
        code = code.decode("ascii", "replace")
    if isinstance(code, str):
        code = client_errno(code)
    return PyXSError(code, os.strerror(code))


def to_bytes(text: object, what: str) -> bytes:
    """Return *text* as bytes: str is encoded as UTF-8, bytes pass as
    they are.  Anything else is refused with :exc:`TypeError`."""
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(text).__name__))


def to_text(data: bytes) -> str:
    """Decode bytes from XenStore as UTF-8.  Bytes that are not UTF-8 are
    kept as lone surrogates (``surrogateescape``), so writing the string
    back restores the original bytes exactly."""
    return data.decode("utf-8", "surrogateescape")


def encode_path(path: Text) -> bytes:
    """Validate a node path and return its wire form (without the NUL)."""
    if type(path) is str:
        raw = _checked_paths.get(path)
        if raw is not None:
            return raw
    raw = to_bytes(path, "path")
    if len(raw) <= RELATIVE_PATH_MAX and _VALID_PATH.fullmatch(raw) is not None:
        if type(path) is str and len(raw) <= _CHECKED_PATH_LENGTH:
            if len(_checked_paths) >= _CHECKED_PATHS_MAX:
                _checked_paths.clear()
            _checked_paths[path] = raw
        return raw
    limit = ABSOLUTE_PATH_MAX if raw.startswith(b"/") else RELATIVE_PATH_MAX
    if _PATH_CHARS.fullmatch(raw) is None:
        if not raw:
            reason = "a path cannot be empty"
        else:
            bad = (_NOT_PATH_CHAR.search(path) if isinstance(path, str)
                   else _NOT_PATH_BYTE.search(raw))
            reason = "%r is not allowed (only ASCII letters, digits and -/_@)" % (
                bad.group() if bad else path,)
    elif raw.startswith(b"@"):
        reason = ("only the special paths @introduceDomain and @releaseDomain "
                  "start with '@', and only watches take them")
    elif b"//" in raw:
        reason = "'//' is not allowed"
    elif raw.endswith(b"/") and raw != b"/":
        reason = "only the root '/' may end with '/'"
    elif len(raw) > limit:
        reason = "%d bytes long, over the limit of %d for %s path" % (
            len(raw), limit, "an absolute" if limit == ABSOLUTE_PATH_MAX else "a relative")
    else:
        return raw
    shown = repr(path)
    if len(shown) > 60:
        shown = shown[:50] + "..."  # The length is in the reason.
    raise InvalidPath("invalid path %s: %s" % (shown, reason))


def encode_watch_path(wpath: Text) -> bytes:
    """Like :func:`encode_path`, but also accept the special paths."""
    raw = to_bytes(wpath, "watch path")
    return raw if raw in SPECIAL_PATHS else encode_path(wpath)


def encode_token(token: Text) -> bytes:
    """Validate a watch token: any string without a NUL byte."""
    raw = to_bytes(token, "token")
    if b"\0" in raw:
        raise InvalidPayload("a watch token cannot contain a NUL byte: %r" % (token,))
    return raw


def encode_value(value: object) -> bytes:
    """Turn a value to write into bytes: bytes-like objects pass as they
    are, str is UTF-8 (lone surrogates back to the bytes they stand for),
    and anything else is written as its ``str()``."""
    if not isinstance(value, (str, bytes, bytearray, memoryview)):
        value = str(value)
    return to_bytes(value, "value")


def encode_perms(perms: Iterable[Text]) -> List[bytes]:
    """Validate a permission list and return its entries as bytes."""
    if isinstance(perms, (str, bytes)):
        # A single string would otherwise be taken letter by letter.
        raise InvalidPermission("permissions must be a list of entries, not %r" % (perms,))
    entries = []
    for perm in perms:
        try:
            raw = to_bytes(perm, "permission")
        except TypeError:
            raise InvalidPermission(perm) from None
        if _PERMISSION.fullmatch(raw) is None:
            raise InvalidPermission(perm)
        entries.append(raw)
    if not entries:
        raise InvalidPermission("a permission list needs at least the owner entry")
    return entries


def encode_number(number: Union[int, Text], what: str) -> bytes:
    """Validate a non-negative integer argument (a domain id, a page frame
    number, an event channel) and return it in decimal."""
    if isinstance(number, (str, bytes)):
        raw = to_bytes(number, what)
        if not raw.isdigit():
            raise InvalidPayload("%s must be a non-negative integer, not %r" % (what, number))
        return raw
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise InvalidPayload("%s must be a non-negative integer, not %r" % (what, number))
    return b"%d" % number


def validate_path(path: Text) -> Text:
    """Check that *path* is a node path XenStore accepts.

    >>> validate_path("/local/domain/0/name")
    '/local/domain/0/name'

    :param path: the path, as str or bytes.
    :returns: *path*, unchanged.
    :raises pyxs.exceptions.InvalidPath: when it is not valid; see
        :exc:`~pyxs.exceptions.InvalidPath` for the rules.
    """
    encode_path(path)
    return path


def validate_watch_path(wpath: Text) -> Text:
    """Check that *wpath* can be watched: a valid node path, or one of the
    special paths ``@introduceDomain`` and ``@releaseDomain``.

    :param wpath: the path, as str or bytes.
    :returns: *wpath*, unchanged.
    :raises pyxs.exceptions.InvalidPath: when it is not valid.
    """
    encode_watch_path(wpath)
    return wpath


def validate_perms(perms: Sequence[Text]) -> Sequence[Text]:
    """Check a permission list, such as ``["b0", "r5"]``.

    The first entry names the owner, whose access is always full; its
    letter is the access of every domain the list does not name.

    :param perms: the entries, as str or bytes.
    :returns: *perms*, unchanged.
    :raises pyxs.exceptions.InvalidPermission: when the list is empty or
        an entry is not ``<r|w|b|n><domid>``.
    """
    encode_perms(perms)
    return perms


def warn_deprecated(old: str, new: str) -> None:
    """Warn that the caller's caller used *old*, a name kept from pyxs 0.4,
    and that *new* replaces it."""
    warnings.warn("%s is deprecated since pyxs 0.5.0: use %s instead" % (old, new),
                  DeprecationWarning, stacklevel=3)


def check_path(path: Text) -> Text:
    """Deprecated name of :func:`validate_path`.

    .. deprecated:: 0.5.0
       Use :func:`validate_path`.
    """
    warn_deprecated("pyxs.helpers.check_path()", "pyxs.helpers.validate_path()")
    return validate_path(path)


def check_watch_path(wpath: Text) -> Text:
    """Deprecated name of :func:`validate_watch_path`.

    .. deprecated:: 0.5.0
       Use :func:`validate_watch_path`.
    """
    warn_deprecated("pyxs.helpers.check_watch_path()", "pyxs.helpers.validate_watch_path()")
    return validate_watch_path(wpath)


def check_perms(perms: Sequence[Text]) -> Sequence[Text]:
    """Deprecated name of :func:`validate_perms`.

    .. deprecated:: 0.5.0
       Use :func:`validate_perms`.
    """
    warn_deprecated("pyxs.helpers.check_perms()", "pyxs.helpers.validate_perms()")
    return validate_perms(perms)
