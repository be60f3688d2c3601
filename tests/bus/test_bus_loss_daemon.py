"""The daemon side of a lost bus connection, on a private dbus-daemon with the in-memory
engine: the running transaction is not recorded as failed, its note says why, pxhostd
exits 1 without hanging on the dead connection; and what the engine recovered at start
becomes one history entry that says why the operation was interrupted.

The node test (tests/e2e/test_bus_loss.py) shows the whole path with the real engine and
systemd; this one pins the daemon's part where it can be looked at directly."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

from daemon_harness import eventually
from fake_engine import FakeEngine
from test_manager import SPEC

from pxhostd.bus.client import PxClient
from pxhostd.daemon.service import Daemon, DaemonOptions
from pxhostd.engine.api import Recovered
from pxhostd.engine.interruption import LOST_BUS, RESTARTED
from pxhostd.engine.journal import RecoveryAction
from pxhostd.paths import Paths


class NotingEngine(FakeEngine):
    def __init__(self, daemon: Any) -> None:
        super().__init__(daemon)
        self.gate = asyncio.Event()  # the install never finishes by itself
        self.noted: list[tuple[str, str]] = []
        self.recovered: list[Recovered] = []

    async def interrupted(self, txid: str, reason: str) -> None:
        self.noted.append((txid, reason))

    def take_recovered(self) -> list[Recovered]:
        taken, self.recovered = self.recovered, []
        return taken


def history_file(daemon: Daemon) -> list[dict[str, Any]]:
    path = daemon.paths.history_file
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_lost_bus_connection_interrupts_the_transaction_without_a_failed_entry(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> tuple[int, NotingEngine, Daemon]:
        engines: list[NotingEngine] = []

        def factory(daemon: Any) -> NotingEngine:
            engines.append(NotingEngine(daemon))
            return engines[-1]

        daemon = Daemon(DaemonOptions(paths=Paths().under(state_root),
                                      bus_address=dbus_address), factory)
        task = asyncio.create_task(daemon.run())
        await eventually(lambda: daemon.state == "idle", "the daemon ready")
        client = await PxClient.connect(dbus_address)
        await client.install(SPEC, txid="cut")
        # The engine itself has the request (not only the transaction object: before the
        # engine starts, nothing is journaled and nothing needs a note).
        await eventually(lambda: any(r.txid == "cut" for r in engines[0].calls),
                         "the engine running the install")
        assert daemon.bus is not None
        daemon.bus._sock.shutdown(socket.SHUT_RDWR)  # the bus connection is gone
        code = await asyncio.wait_for(task, 30)  # no hang on the dead connection
        daemon.bus._stream.close()  # the process would exit here
        daemon.bus._sock.close()
        client.close()
        return code, engines[0], daemon

    code, engine, daemon = asyncio.run(body())
    assert code == 1
    assert engine.noted == [("cut", LOST_BUS)]
    assert [e for e in history_file(daemon) if e["txid"] == "cut"] == []


def test_what_recovery_did_at_start_is_one_history_entry_saying_why(
    dbus_address: str, state_root: Path
) -> None:
    recovered = [
        Recovered("upgrade up-1 was interrupted at step 'restart' before its commit point; "
                  "rolling back", "up-1", "upgrade", "2026-01-01T00:00:00.000Z",
                  RecoveryAction.ROLL_BACK, LOST_BUS, "1.0.0", "1.0.0"),
        Recovered("install in-1 was interrupted after its commit point; finishing it",
                  "in-1", "install", "2026-01-01T00:01:00.000Z",
                  RecoveryAction.ROLL_FORWARD, RESTARTED, None, "2.0.0"),
    ]

    class Recovering(NotingEngine):
        async def start(self) -> None:
            self.recovered = list(recovered)

    async def body() -> list[dict[str, Any]]:
        daemon = Daemon(DaemonOptions(paths=Paths().under(state_root),
                                      bus_address=dbus_address), Recovering)
        task = asyncio.create_task(daemon.run())
        await eventually(lambda: daemon.state == "idle", "the daemon ready")
        client = await PxClient.connect(dbus_address)
        entries = await client.history(10)
        client.close()
        daemon.request_stop()
        await asyncio.wait_for(task, 30)
        return entries

    entries = {e["txid"]: e for e in asyncio.run(body())}
    back = entries["up-1"]
    assert (back["result"], back["error"], back["operation"]) == (
        "rolled-back", "Interrupted", "upgrade")
    assert back["message"].startswith(LOST_BUS + "; recovery rolled it back")
    assert (back["version_before"], back["version_after"]) == ("1.0.0", "1.0.0")
    assert back["started"] == "2026-01-01T00:00:00.000Z"
    forward = entries["in-1"]
    assert forward["result"] == "success" and not forward.get("error")
    assert forward["message"].startswith(RESTARTED + "; recovery finished it")
    assert forward["version_after"] == "2.0.0"
