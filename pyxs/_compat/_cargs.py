"""How CPython's C argument parser sees the arguments of a C method.

The :mod:`xen.lowlevel.xs` stand-in must refuse exactly the arguments the
C extension refuses, with the same exception types and messages, so this
module repeats the checks of CPython 3.11's ``Python/getargs.c``
(``PyArg_ParseTuple``, ``PyArg_ParseTupleAndKeywords``) and of its method
calls (``Objects/methodobject.c``, the ``METH_NOARGS`` and
``METH_VARARGS`` conventions).  The messages are CPython 3.11's, word
for word, so that programs and tests that look at them see no difference.

Every converter takes ``(value, position)``, *position* counting from 1,
and returns the C value; those whose C messages name no position ignore
it.
"""

import operator
from typing import Any, Callable, Dict, List, Sequence, Tuple

__all__ = ["MISSING", "Converter", "c_str", "c_data", "c_long", "c_int", "exactly",
           "keywords", "refuse_keywords", "no_arguments"]

#: What :func:`keywords` gives for an optional argument not passed.
MISSING = object()

#: A converter: ``(value, position) -> C value``.
Converter = Callable[[object, int], Any]

# Type flags (Include/object.h) that tell a class statement's types from
# types written in C.
_IMMUTABLETYPE = 1 << 8
_HEAPTYPE = 1 << 9


def _tp_name(kind: type) -> str:
    """The C-level name of a type (``tp_name``), which error messages of
    the C argument parser print.  Classes made by a ``class`` statement
    go by their bare name; types written in C carry their module in it
    (``collections.OrderedDict``, ``array.array``), unless they are
    built-ins."""
    python_class = kind.__flags__ & _HEAPTYPE and not kind.__flags__ & _IMMUTABLETYPE
    if python_class or kind.__module__ == "builtins":
        return kind.__name__
    return "%s.%s" % (kind.__module__, kind.__name__)


def _arg_type_name(value: object) -> str:
    """How a refused argument's type is named in "must be X, not Y"."""
    return "None" if value is None else _tp_name(type(value))


def c_str(value: object, position: int) -> bytes:
    """Convert an argument as the ``s`` format does: a str without NUL,
    encoded as UTF-8."""
    if not isinstance(value, str):
        raise TypeError("argument %d must be str, not %s" % (position, _arg_type_name(value)))
    raw = value.encode("utf-8")
    if b"\0" in raw:
        raise ValueError("embedded null character")
    return raw


def c_data(value: object, position: int) -> bytes:
    """Convert an argument as the ``s#`` format does: a str (as UTF-8,
    NULs allowed) or an immutable bytes object."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return bytes(value)
    try:
        memoryview(value)  # type: ignore[arg-type]
        has_buffer = True
    except TypeError:
        has_buffer = False
    if not has_buffer:
        raise TypeError("a bytes-like object is required, not '%s'" % _tp_name(type(value)))
    # Buffers that must be released after use (bytearray, memoryview,
    # array, ...) are refused: the C code could not hold on to them.
    raise TypeError("argument %d must be read-only bytes-like object, not %s"
                    % (position, _arg_type_name(value)))


def c_long(value: object, position: int) -> int:
    """Convert an argument as the ``l`` format does (a C long)."""
    # operator.index() words its TypeError exactly as the C code does.
    number = operator.index(value)  # type: ignore[arg-type]
    if not -(1 << 63) <= number < (1 << 63):
        raise OverflowError("Python int too large to convert to C long")
    return number


def c_int(value: object, position: int) -> int:
    """Convert an argument as the ``i`` format does (a C int)."""
    number = c_long(value, position)
    if number > 0x7FFFFFFF:
        raise OverflowError("signed integer is greater than maximum")
    if number < -0x80000000:
        raise OverflowError("signed integer is less than minimum")
    return number


def refuse_keywords(function: str, kwargs: Dict[str, object]) -> None:
    """The check a ``METH_VARARGS`` or ``METH_NOARGS`` call makes before
    the C function runs; *function* as the message names it."""
    if kwargs:
        raise TypeError("%s() takes no keyword arguments" % function)


def no_arguments(function: str, args: Tuple[object, ...]) -> None:
    """The argument check of a ``METH_NOARGS`` call."""
    if args:
        raise TypeError("%s() takes no arguments (%d given)" % (function, len(args)))


def exactly(args: Tuple[object, ...], count: int) -> None:
    """The argument count check of ``PyArg_ParseTuple``."""
    if len(args) != count:
        raise TypeError("function takes exactly %d argument%s (%d given)"
                        % (count, "" if count == 1 else "s", len(args)))


def keywords(args: Tuple[object, ...], kwargs: Dict[Any, Any],
             names: Sequence[str], required: int,
             converters: Sequence[Converter]) -> List[Any]:
    """Parse arguments as ``PyArg_ParseTupleAndKeywords`` does, checks in
    the same order; missing optional arguments come back as
    :data:`MISSING`.  *kwargs* is read with plain dict operations, as the
    C code reads it, whatever the dict's class overrides."""
    total, size = len(args) + dict.__len__(kwargs), len(names)
    if total > size:
        raise TypeError("function takes at most %d %sargument%s (%d given)"
                        % (size, "" if args else "keyword ", "" if size == 1 else "s", total))
    values: List[Any] = [MISSING] * size
    left = dict.__len__(kwargs)
    for i, name in enumerate(names):
        if i < len(args):
            value = args[i]
        elif left:
            value = dict.get(kwargs, name, MISSING)
            if value is not MISSING:
                left -= 1
        else:
            value = MISSING
        if value is not MISSING:
            values[i] = converters[i](value, i + 1)
            continue
        if i < required:
            raise TypeError("function missing required argument '%s' (pos %d)" % (name, i + 1))
        if not left:
            return values
    if left:
        for i in range(len(args)):
            if dict.__contains__(kwargs, names[i]):
                raise TypeError("argument for function given by name ('%s') and position (%d)"
                                % (names[i], i + 1))
        for key in dict.keys(kwargs):
            if not isinstance(key, str):
                raise TypeError("keywords must be strings")
            if key not in names:
                raise TypeError("'%s' is an invalid keyword argument for this function" % key)
    return values
