"""A pure-Python stand-in for Xen's C extension module ``xen.lowlevel.xs``.

Programs written for the C extension switch to pyxs by changing one
import::

    import xen.lowlevel.xs as xs_module      # before
    import pyxs.compat as xs_module          # after

The module has the extension's two names, :class:`xs` and
:exc:`Error`; how they behave, and the few ways in which they knowingly
differ from the C extension, is described in "Moving from
xen.lowlevel.xs" in pyxs's documentation.

.. versionadded:: 0.5.0
   The public name of the module, which before was only importable as
   ``pyxs._compat`` (that name still works).
"""

from ._compat import Error, xs

__all__ = ["xs", "Error"]
