"""`pxhostctl watch`: print the daemon's property changes as they happen (no polling)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from dbus_fast import Message, MessageType

from pxhostd.bus.client import PxClient
from pxhostd.bus.names import BUS_NAME, MANAGER_INTERFACE, OBJECT_PATH
from pxhostd.bus.variants import unwrap


async def watch(client: PxClient, *, json_output: bool) -> None:
    def emit(changes: dict[str, Any]) -> None:
        if json_output:
            print(json.dumps({"time": time.time(), **changes}, sort_keys=True), flush=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            text = " ".join(f"{k}={v}" for k, v in sorted(changes.items()))
            print(f"{stamp} {text}", flush=True)

    def handler(msg: Message) -> None:
        if (
            msg.message_type == MessageType.SIGNAL
            and msg.path == OBJECT_PATH
            and msg.member == "PropertiesChanged"
            and msg.body
            and msg.body[0] == MANAGER_INTERFACE
        ):
            emit(unwrap(msg.body[1]))

    client.bus.add_message_handler(handler)
    await client.add_match(
        f"type='signal',sender='{BUS_NAME}',path='{OBJECT_PATH}',"
        "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"
    )
    emit(await client.get_all())
    await asyncio.Event().wait()
