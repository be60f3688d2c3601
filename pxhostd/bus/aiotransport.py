"""The client's connection on dbus-fast's aio bus: for the pod and the tests, which run an
event loop anyway (pxhostctl uses `blocking`)."""

from __future__ import annotations

import asyncio

from dbus_fast.constants import BusType
from dbus_fast.message import Message

from pxhostd.bus.connection import PxMessageBus


class AioEvent:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return self._event.is_set()
        return True


class AioTransport:
    def __init__(self, bus: PxMessageBus) -> None:
        self.bus = bus

    async def call(self, msg: Message, timeout: float) -> Message | None:
        return await asyncio.wait_for(self.bus.call(msg), timeout)

    def event(self) -> AioEvent:
        return AioEvent()


async def connect_aio(
    bus_address: str | None, bus_type: BusType, timeout: float
) -> tuple[PxMessageBus, AioTransport]:
    bus = PxMessageBus(bus_address, bus_type, per_caller_views=False)
    await asyncio.wait_for(bus.connect(), timeout)
    return bus, AioTransport(bus)
