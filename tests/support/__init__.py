"""What pyxs's tests share, one job per module:

* :mod:`.xen`: Xen 4.17's packages and the ``xenfake`` preload library,
  and the one skip-or-fail policy (:func:`~.xen.require`);
* :mod:`.daemons`: Xen's XenStore daemons, run privately;
* :mod:`.xen_clients`: Xen's C clients and ``xen.lowlevel.xs``;
* :mod:`.guestring`: a made-up guest domain on a real daemon;
* :mod:`.wire`: the one raw wire client;
* :mod:`.fakeserver`: the one scripted fake XenStore;
* :mod:`.threads`: calls run in a thread, for tests that must notice a hang.

The Xen harness (xen, daemons, xen_clients) needs the standard library
only, on Python 3.9+: code outside the test suite (``benchmarks/run.py``)
takes it from here, as ``from tests import support``: the names below.
Tests import the modules themselves, so that tests/conftest.py can watch
what they reach for.
"""

from .daemons import start
from .xen import Unavailable, cache_dir, xen_version
from .xen_clients import c_client, load_lowlevel_xs, open_lowlevel_xs

__all__ = ["Unavailable", "c_client", "cache_dir", "load_lowlevel_xs", "open_lowlevel_xs",
           "start", "xen_version"]
