#!/usr/bin/env python3
"""A hostile local client: many bus connections that send calls and never read a reply.

Runs inside a node (or beside a private bus) with python3 and dbus-fast only; dbus-fast is
used just to marshal the messages, the sockets are plain and are never read after the
authentication. Every connection sends `--calls` method calls back to back (Introspect by
default) for at most `--duration` seconds; then it keeps its connection open, unread, until
the end of the window, so the replies pile up at the bus. Prints one JSON object: how many
calls were sent, and on how many connections.

`--read` makes the connections readers instead (each call waits for its reply), for a
flood of reading clients. `--big N --big-mib M` sends N calls of M MiB each (a Status call
with an unexpected string argument: pxhostd reads the whole message, then refuses it) and
reads the replies, to measure what large messages leave in pxhostd's memory.
"""

import argparse
import json
import os
import selectors
import socket
import time
from typing import Any

from dbus_fast import Message

SYSTEM_BUS = "/run/dbus/system_bus_socket"
DEST = "com.portworx.pxhostd1"
OBJ = "/com/portworx/pxhostd1"
CALLS = {
    "Introspect": ("org.freedesktop.DBus.Introspectable", "Introspect", "", []),
    "Status": ("com.portworx.pxhostd1.Manager", "Status", "", []),
    "GetSpec": ("com.portworx.pxhostd1.Manager", "GetSpec", "", []),
    "History": ("com.portworx.pxhostd1.Manager", "History", "u", [0]),
    "GetAll": ("org.freedesktop.DBus.Properties", "GetAll", "s",
               ["com.portworx.pxhostd1.Manager"]),
}


def bus_path(address: str | None) -> str:
    if not address:
        return SYSTEM_BUS
    for part in address.split(";")[0].split(":", 1)[1].split(","):
        key, _, value = part.partition("=")
        if key == "path":
            return value
    raise SystemExit(f"flood: only unix:path= addresses are supported, not {address}")


def authenticate(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
    line = b""
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise SystemExit("flood: the bus closed the connection during authentication")
        line += chunk
    if not line.startswith(b"OK"):
        raise SystemExit(f"flood: authentication refused: {line!r}")
    sock.sendall(b"BEGIN\r\n")
    return sock


def marshal(serial: int, method: str) -> bytes:
    if serial == 1:
        return bytes(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                             interface="org.freedesktop.DBus", member="Hello",
                             serial=1)._marshall(False))
    iface, member, sig, body = CALLS[method]
    return bytes(Message(destination=DEST, path=OBJ, interface=iface,
                         member=member, signature=sig, body=body,
                         serial=serial)._marshall(False))


def non_reading(path: str, connections: int, calls: int, duration: float,
                method: str) -> dict[str, Any]:
    socks = [authenticate(path) for _ in range(connections)]
    pending: dict[socket.socket, bytearray] = {}
    serial = {s: 1 for s in socks}
    sent = {s: 0 for s in socks}
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        pending[s] = bytearray(marshal(1, method))
        sel.register(s, selectors.EVENT_WRITE)
    deadline = time.monotonic() + duration
    active = set(socks)
    while active and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            buf = pending[s]
            if not buf:
                if sent[s] >= calls:
                    sel.unregister(s)
                    active.discard(s)
                    continue
                serial[s] += 1
                buf.extend(marshal(serial[s], method))
                sent[s] += 1
            try:
                n = s.send(buf)
            except BlockingIOError:
                continue
            del buf[:n]
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)  # hold the connections, unread, to the end of the window
    total = sum(sent.values())
    for s in socks:
        s.close()
    return {"mode": "non-reading", "connections": connections, "calls_sent": total}


def reading(path: str, connections: int, duration: float, method: str) -> dict[str, Any]:
    """Each connection: one call, wait for any reply bytes, the next call (raw, cheap)."""
    import asyncio

    from dbus_fast import BusType
    from dbus_fast.aio.message_bus import MessageBus

    iface, member, sig, body = CALLS[method]

    async def one(out: list[int]) -> None:  # out: [answered, timed out]
        bus = await MessageBus(bus_address=f"unix:path={path}",
                               bus_type=BusType.SYSTEM).connect()
        stop = time.monotonic() + duration
        while time.monotonic() < stop:
            try:
                await asyncio.wait_for(bus.call(Message(
                    destination=DEST, path=OBJ, interface=iface, member=member,
                    signature=sig, body=body)), 30)
            except TimeoutError:
                out[1] += 1
                continue
            out[0] += 1
        bus.disconnect()

    async def run() -> tuple[int, int]:
        counters = [[0, 0] for _ in range(connections)]
        await asyncio.gather(*(one(c) for c in counters))
        return sum(c[0] for c in counters), sum(c[1] for c in counters)

    done, timed_out = asyncio.run(run())
    return {"mode": "reading", "connections": connections, "calls_done": done,
            "calls_timed_out": timed_out}


def big(path: str, count: int, mib: float) -> dict[str, Any]:
    import asyncio

    from dbus_fast import BusType, MessageType
    from dbus_fast.aio.message_bus import MessageBus

    async def run() -> int:
        bus = await MessageBus(bus_address=f"unix:path={path}", bus_type=BusType.SYSTEM).connect()
        refused = 0
        for _ in range(count):
            reply = await bus.call(Message(destination=DEST, path=OBJ,
                                           interface="com.portworx.pxhostd1.Manager",
                                           member="Status", signature="s",
                                           body=["x" * int(mib * 1024 * 1024)]))
            refused += reply is not None and reply.message_type == MessageType.ERROR
        bus.disconnect()
        return refused

    return {"mode": "big", "messages": count, "mib": mib, "refused": asyncio.run(run())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", help="bus address (default: the system bus)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--calls", type=int, default=2000, help="calls per connection")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--method", choices=sorted(CALLS), default="Introspect")
    p.add_argument("--read", action="store_true", help="read every reply (a reading flood)")
    p.add_argument("--big", type=int, default=0, metavar="N", help="send N large calls")
    p.add_argument("--big-mib", type=float, default=30.0)
    args = p.parse_args()
    path = bus_path(args.address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"))
    if args.big:
        result = big(path, args.big, args.big_mib)
    elif args.read:
        result = reading(path, args.connections, args.duration, args.method)
    else:
        result = non_reading(path, args.connections, args.calls, args.duration, args.method)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
