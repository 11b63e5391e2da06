"""The old name of :mod:`pyxs.pytest_plugin`, kept so that ``-p
pyxs.testing.pytest_plugin`` and ``pytest_plugins =
["pyxs.testing.pytest_plugin"]`` go on working: it loads that plugin.

.. deprecated:: 0.5.0
   Use ``pyxs.pytest_plugin`` (or nothing at all when pyxs is installed).
"""

pytest_plugins = ["pyxs.pytest_plugin"]
