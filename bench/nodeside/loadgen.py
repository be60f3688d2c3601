#!/usr/bin/env python3
"""In-node load generator: N clients, each its own bus connection, calling back to back.

Runs inside a node with python3 and dbus-fast only. Each client sends one call, waits for
the reply, sends the next: latency is per call, rate is calls per second over all clients,
and the stall is the largest gap between two consecutive replies on one client. Prints one
JSON object.

Targets:
  pxhostd  com.portworx.pxhostd1.Manager.Status()
  systemd  org.freedesktop.DBus.Properties.Get(org.freedesktop.systemd1.Unit, ActiveState)
           on pxhostd.service's unit object (a unit property read from systemd's Manager)
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

UNIT_PATH = "/org/freedesktop/systemd1/unit/pxhostd_2eservice"


def make_message(target: str) -> Message:
    if target == "pxhostd":
        return Message(
            destination="com.portworx.pxhostd1",
            path="/com/portworx/pxhostd1",
            interface="com.portworx.pxhostd1.Manager",
            member="Status",
        )
    return Message(
        destination="org.freedesktop.systemd1",
        path=UNIT_PATH,
        interface="org.freedesktop.DBus.Properties",
        member="Get",
        signature="ss",
        body=["org.freedesktop.systemd1.Unit", "ActiveState"],
    )


async def client(
    bus: MessageBus, target: str, start: float, stop: float, out: dict[str, Any]
) -> None:
    latencies: list[float] = []
    max_gap = 0.0
    errors = 0
    last_reply: float | None = None
    while True:
        t0 = time.perf_counter()
        if t0 >= stop:
            break
        reply = await bus.call(make_message(target))
        t1 = time.perf_counter()
        if reply is None or reply.message_type == MessageType.ERROR:
            errors += 1
        if t0 >= start:
            latencies.append(t1 - t0)
            if last_reply is not None:
                max_gap = max(max_gap, t1 - last_reply)
        last_reply = t1
    out["latencies"] = latencies
    out["max_gap"] = max_gap
    out["errors"] = errors


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=("pxhostd", "systemd"), required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()

    buses = [await MessageBus(bus_type=BusType.SYSTEM).connect() for _ in range(args.clients)]
    now = time.perf_counter()
    start = now + args.warmup
    stop = start + args.duration
    results: list[dict[str, Any]] = [{} for _ in buses]
    cpu0 = os.times()
    await asyncio.gather(
        *(
            client(bus, args.target, start, stop, out)
            for bus, out in zip(buses, results, strict=True)
        )
    )
    cpu1 = os.times()
    for bus in buses:
        bus.disconnect()
    latencies = [x for r in results for x in r["latencies"]]
    print(
        json.dumps(
            {
                "target": args.target,
                "clients": args.clients,
                "duration_s": args.duration,
                "calls": len(latencies),
                "errors": sum(r["errors"] for r in results),
                "calls_per_s": len(latencies) / args.duration,
                "p50_ms": percentile(latencies, 0.50) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
                "max_ms": max(latencies, default=float("nan")) * 1000,
                "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else float("nan"),
                "max_stall_ms": max(r["max_gap"] for r in results) * 1000,
                "loadgen_cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
