"""Sphinx configuration for pyxs's documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (``./run-tests``
does, after the doctests). The examples in these pages are doctests, run by
pytest against a real xenstored; see the conftest.py at the repository root.
"""

import os
import sys
import typing

HERE = os.path.abspath(os.path.dirname(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import pyxs  # noqa: E402  (needs ROOT on sys.path)

project = "pyxs"
author = "the pyxs authors"
copyright = "2011-2016 Selectel; the pyxs authors"
version = release = pyxs.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

# No intersphinx: the build must work without a network.
root_doc = master_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build"]
templates_path = []

autodoc_member_order = "bysource"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_typehints = "description"
# Type aliases written in signatures, and what they stand for.
autodoc_type_aliases = {"Tree": "pyxs.pytest_plugin.Tree"}
# Keep the signatures readable: the Client's defaults are plain None.
python_use_unqualified_type_names = True

# ">>>" blocks are doctests: pytest runs them, Sphinx only shows them.
trim_doctest_flags = True

# run-tests builds with -n (nitpicky): every reference must resolve.  With
# no intersphinx (no network), references into Python's standard library
# have no target; they are the only ones let through, with the TypeVar
# that generic signatures show.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(builtins|collections|enum|errno|logging|os|select|signal|socket|struct"
               r"|threading|time|typing|weakref)(\..*)?"),
]
nitpick_ignore = [("py:class", "pyxs.client.T")]

# Objects defined in private modules and documented under the public
# module that exports them: references to the private name (type hints
# give those) go to the public one.
PUBLIC_MODULES = {
    "pyxs._internal.": "pyxs.protocol.",
    "pyxs._compat.": "pyxs.compat.",
    "pyxs.testing._store.": "pyxs.testing.",
}

html_theme = "alabaster"
html_static_path = []
html_title = "pyxs %s" % release


# Pages written alongside the rest of pyxs join the index's table of
# contents as soon as they exist: the line "@optional NAME ..." in a
# toctree of index.rst becomes one entry per NAME.rst that is there.
OPTIONAL_MARK = "@optional"


def _expand_optional_pages(app, docname, source):
    if docname != "index":
        return
    lines = []
    for line in source[0].splitlines():
        words = line.split()
        if words[:1] == [OPTIONAL_MARK]:
            indent = line[:len(line) - len(line.lstrip())]
            lines.extend(indent + name for name in words[1:]
                         if os.path.exists(os.path.join(HERE, name + ".rst")))
        else:
            lines.append(line)
    source[0] = "\n".join(lines) + "\n"


def _resolve_to_public_module(app, env, node, contnode):
    target = node.get("reftarget", "")
    for private, public in PUBLIC_MODULES.items():
        if node.get("refdomain") == "py" and target.startswith(private):
            return env.get_domain("py").resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"],
                public + target[len(private):], node, contnode)
    return None


def _hide_private_bases(app, name, obj, options, bases):
    """Show a class's public ancestry only: a private base (``_ChannelUser``,
    the namedtuple behind ``Packet``, the generic splitter behind
    ``PacketDecoder``) gives way to its own bases, and ``Generic`` is
    left out."""
    public = []
    pending = list(bases)
    while pending:
        base = pending.pop(0)
        base = typing.get_origin(base) or base  # _FrameSplitter[Packet]: _FrameSplitter
        if base is typing.Generic:
            continue
        if base.__name__.startswith("_"):
            pending[:0] = [b for b in base.__bases__ if b is not object]
        elif base not in public:
            public.append(base)
    bases[:] = public or [object]


def setup(app):
    app.connect("source-read", _expand_optional_pages)
    app.connect("missing-reference", _resolve_to_public_module)
    app.connect("autodoc-process-bases", _hide_private_bases)
