"""Helpers for the user-manager tests: a client on the manager's bus, per-test unit files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dbus_fast.aio.message_bus import MessageBus
from um_harness import UserManager

from pxhostd.systemd import Systemd


@asynccontextmanager
async def systemd_client(manager: UserManager) -> AsyncIterator[Systemd]:
    """A dbus-fast MessageBus on the manager's bus and a Systemd client on it."""
    bus = await MessageBus(bus_address=manager.bus_address).connect()
    try:
        async with await Systemd.connect(bus) as systemd:
            yield systemd
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


class Units:
    """Unit files for one test, named after it so tests never share a unit."""

    def __init__(self, manager: UserManager, stem: str) -> None:
        self.manager = manager
        self.stem = stem

    def name(self, suffix: str, kind: str = "service") -> str:
        return f"{self.stem}-{suffix}.{kind}"

    def write(self, name: str, text: str) -> Path:
        return self.manager.write_unit(name, text)

    def path(self, name: str) -> Path:
        return self.manager.unit_dir / name

    def script(self, name: str, text: str) -> Path:
        path = self.manager.base / "scripts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path
