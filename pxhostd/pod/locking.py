"""The host lock, taken from the pod without blocking its event loop.

The pod reaches the host's /run/pxhostd/host.lock at the same path (the DaemonSet mounts
/run/pxhostd read-write), so `hostfs.host_lock` serialises the pod's host changes with the
daemon's. It is polled, like the daemon does, so signals and the health endpoint stay live
while someone else holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from pxhostd.errors import Busy, HostStateError
from pxhostd.hostfs import host_lock
from pxhostd.paths import Paths

DEFAULT_LOCK = Paths().lock_file
#: How long the pod waits for the lock before giving up (seconds).
LOCK_WAIT = 120.0
_POLL = 0.2


@contextlib.asynccontextmanager
async def host_locked(path: Path = DEFAULT_LOCK, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    held = contextlib.ExitStack()
    while True:
        try:
            held.enter_context(host_lock(path, wait=False))
            break
        except Busy:
            if loop.time() >= deadline:
                raise Busy(f"the host lock {path} stayed taken for {wait:g} s") from None
        except OSError as exc:
            raise HostStateError(
                f"cannot take the host lock {path}: {exc.strerror} (the pod needs the host's "
                "/run/pxhostd mounted read-write)"
            ) from exc
        await asyncio.sleep(_POLL)
    with held:
        yield
