"""The host lock, taken from the pod without blocking its event loop.

The pod reaches the host's /run/pxhostd/host.lock at the same path (the DaemonSet mounts
/run/pxhostd read-write), so `hostfs.host_lock_polled`, the daemon's way too, serialises
the pod's host changes with the daemon's while signals and the health endpoint stay live.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from pxhostd.hostfs import host_lock_polled
from pxhostd.paths import Paths

DEFAULT_LOCK = Paths().lock_file
#: How long the pod waits for the lock before giving up (seconds).
LOCK_WAIT = 120.0


@contextlib.asynccontextmanager
async def host_locked(path: Path = DEFAULT_LOCK, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
    hint = " (the pod needs the host's /run/pxhostd mounted read-write)"
    async with host_lock_polled(path, wait, hint):
        yield
