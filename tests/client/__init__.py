"""The tests of pyxs.Client.

Most go through the ``client``/``xenstore`` fixtures of tests/conftest.py,
so each runs against the C xenstored, the OCaml oxenstored and pyxs's
emulator, with nodes made under the per-test ``root`` path.  Observed
differences between the daemons (Xen 4.17) that matter are written down
next to the tests that meet them.
"""
