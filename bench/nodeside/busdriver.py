#!/usr/bin/env python3
"""In-node D-Bus driver: one JSON request per input line, one JSON reply line per request.

It runs inside a node with nothing but python3 and dbus-fast, so what it exercises is the
real bus, its policy and the daemon, not this repository's client library. Tests and
benchmarks copy it in and talk to it over stdin/stdout.

Values travel as JSON with two tags: `{"$v": [signature, value]}` is a Variant and
`{"$b": "<hex>"}` is bytes (an `ay`). Requests:
  {"call": {"dest": ..., "path": ..., "iface": ..., "member": ..., "sig": ..., "body": [...]}}
  {"own": "<bus name>"}                       try to own a name, report the outcome
Replies: {"ok": true, "body": [...]} or {"ok": false, "error": NAME, "message": TEXT}.
If the bus drops the connection (it does for a message it cannot accept), the reply's error
is "disconnected" and the next request uses a new connection.
"""

import asyncio
import json
import sys
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio.message_bus import MessageBus


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$v"}:
            sig, inner = value["$v"]
            return Variant(sig, decode(inner))
        if set(value) == {"$b"}:
            return bytes.fromhex(value["$b"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def encode(value: Any) -> Any:
    if isinstance(value, Variant):
        return {"$v": [value.signature, encode(value.value)]}
    if isinstance(value, bytes | bytearray):
        return {"$b": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


class Driver:
    def __init__(self) -> None:
        self.bus: MessageBus | None = None

    async def connection(self) -> MessageBus:
        if self.bus is None or not self.bus.connected:
            self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        return self.bus

    async def call(self, spec: dict[str, Any]) -> dict[str, Any]:
        bus = await self.connection()
        msg = Message(
            destination=spec.get("dest", "com.portworx.pxhostd1"),
            path=spec.get("path", "/com/portworx/pxhostd1"),
            interface=spec.get("iface", "com.portworx.pxhostd1.Manager"),
            member=spec["member"],
            signature=spec.get("sig", ""),
            body=decode(spec.get("body", [])),
        )
        try:
            reply = await asyncio.wait_for(bus.call(msg), spec.get("timeout", 60))
        except (EOFError, OSError, ConnectionError) as exc:
            self.bus = None
            return {"ok": False, "error": "disconnected", "message": f"{type(exc).__name__}: {exc}"}
        if reply is None:
            return {"ok": False, "error": "noreply", "message": ""}
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else ""
            return {"ok": False, "error": reply.error_name, "message": str(text)}
        return {"ok": True, "body": encode(reply.body)}

    async def own(self, name: str) -> dict[str, Any]:
        bus = await self.connection()
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="RequestName",
                signature="su",
                body=[name, 4],  # DO_NOT_QUEUE
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            return {"ok": False, "error": reply.error_name, "message": str(reply.body[0])}
        return {"ok": True, "body": encode(reply.body)}

    async def handle(self, line: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if "own" in request:
                return await self.own(request["own"])
            return await self.call(request["call"])
        except Exception as exc:  # report, never die: the caller reads one line per request
            return {"ok": False, "error": "driver", "message": f"{type(exc).__name__}: {exc}"}


async def main() -> None:
    driver = Driver()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if not line.strip():
            continue
        reply = await driver.handle(line)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
