"""Whether this machine can mount the FUSE file systems that serve a
guest's XenBus device (pyxs.testing's ``xenbus_path``, and the guest's
kernel of tests/support/guestring.py).

The tests that need one skip when, and only when, :func:`unavailable`
names what is missing; once it is there, a failure to mount is a failure
of the test.
"""

import os
import shutil
from typing import Optional

from .xen import Unavailable


def unavailable() -> Optional[str]:
    """What this machine lacks to mount a FUSE file system, with how to
    get it, or None when nothing is missing.

    pyxs.testing mounts with ``mount(2)`` as root, and through
    ``fusermount3`` (or ``fusermount``) otherwise; both need ``/dev/fuse``.
    """
    if not os.path.exists("/dev/fuse"):
        return ("/dev/fuse is missing: load the kernel module (modprobe fuse), or give "
                "the container the device (docker run --device /dev/fuse)")
    if os.geteuid() != 0 and not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "not root and no fusermount3: run the tests as root, or apt-get install fuse3"
    return None


def check() -> None:
    """Raise :class:`~tests.support.xen.Unavailable` when FUSE is (for
    :func:`tests.support.xen.require`)."""
    reason = unavailable()
    if reason is not None:
        raise Unavailable("cannot mount a FUSE file system: " + reason)
