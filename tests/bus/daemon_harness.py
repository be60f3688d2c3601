"""A pxhostd daemon (in-memory engine) serving on the private test bus."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from dbus_fast import Message
from fake_engine import FakeEngine

from pxhostd.bus.client import PxClient
from pxhostd.bus.names import BUS_NAME
from pxhostd.daemon.service import Daemon, DaemonOptions
from pxhostd.paths import Paths
from pxhostd.status.statusfile import StatusMissing

#: How long a condition may take to hold before the test fails (a bound, not a speed check).
BOUND = 30.0


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = BOUND
) -> None:
    """Wait until `check` holds (work the daemon does off the loop), or fail naming `what`.

    A plain check runs in a thread (it may read files); an async one on the loop. A file
    the check reads that is not written yet counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if inspect.iscoroutinefunction(check):
                held = await check()
            else:
                held = await asyncio.to_thread(check)
        except (FileNotFoundError, StatusMissing):
            held = False
        if held:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"never happened within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_daemon(address: str, root: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(DaemonOptions(paths=Paths().under(root), bus_address=address), FakeEngine)
    task = asyncio.create_task(daemon.run())
    client = await PxClient.connect(address)

    async def ready() -> bool:
        reply = await client.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="NameHasOwner",
                signature="s",
                body=[BUS_NAME],
            )
        )
        return reply is not None and bool(reply.body[0]) and daemon.state == "idle"

    try:
        await eventually(ready, "the daemon on the bus and idle")
        yield daemon
    finally:
        client.close()
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


