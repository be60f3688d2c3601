"""A pxhostd daemon (in-memory engine) serving on the private test bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dbus_fast import Message
from fake_engine import FakeEngine

from pxhostd.bus.client import PxClient
from pxhostd.bus.names import BUS_NAME
from pxhostd.daemon.service import Daemon, DaemonOptions
from pxhostd.paths import Paths


@contextlib.asynccontextmanager
async def running_daemon(address: str, root: Path) -> AsyncIterator[Daemon]:
    daemon = Daemon(DaemonOptions(paths=Paths().under(root), bus_address=address), FakeEngine)
    task = asyncio.create_task(daemon.run())
    client = await PxClient.connect(address)
    try:
        for _ in range(200):
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
            if reply is not None and reply.body[0] and daemon.state == "idle":
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("daemon did not become ready")
        yield daemon
    finally:
        client.close()
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


