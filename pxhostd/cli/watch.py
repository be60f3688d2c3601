"""`pxhostctl watch` without an id: the daemon's state changes as they happen (no polling).

Property names are shown as `status` names them (`service_state`, not `ServiceState`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from dbus_fast.constants import MessageType
from dbus_fast.message import Message

from pxhostd.bus.client import PxClient
from pxhostd.bus.names import BUS_NAME, MANAGER_INTERFACE, OBJECT_PATH
from pxhostd.cli.output import shown
from pxhostd.cli.schema import iso
from pxhostd.variants import unwrap

#: Manager property -> the key `pxhostctl status --json` uses for the same fact.
NAMES = {
    "Version": "daemon_version",
    "PayloadVersion": "payload_version",
    "State": "state",
    "ServiceState": "service_state",
    "ActiveTransaction": "active_transaction",
    "LastError": "last_error",
}


def renamed(changes: dict[str, Any]) -> dict[str, Any]:
    out = {NAMES.get(k, k): v for k, v in changes.items()}
    if out.get("active_transaction") == "/":
        out["active_transaction"] = None
    return out


async def watch(client: PxClient, *, json_output: bool) -> None:
    def emit(changes: dict[str, Any]) -> None:
        facts = renamed(changes)
        if json_output:
            print(json.dumps({"time": iso(time.time()), **facts}, sort_keys=True), flush=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            text = " ".join(f"{k}={shown(v)}" for k, v in sorted(facts.items()))
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
    await client.listen()
