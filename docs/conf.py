"""Sphinx configuration for pyxs's documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (``./run-tests``
does, after the doctests). The examples in these pages are doctests, run by
pytest against a real xenstored; see the conftest.py at the repository root.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
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
# Keep the signatures readable: the Client's defaults are plain None.
python_use_unqualified_type_names = True

# ">>>" blocks are doctests: pytest runs them, Sphinx only shows them.
trim_doctest_flags = True

html_theme = "alabaster"
html_static_path = []
html_title = "pyxs %s" % release
