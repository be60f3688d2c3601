"""The Manager interface and transactions over a real dbus-daemon, with an in-memory engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import eventually, running_daemon
from dbus_fast import Message, MessageType, Variant
from fake_engine import FakeEngine

from pxhostd import __version__
from pxhostd.bus.client import PxClient, raise_for_result
from pxhostd.bus.names import MANAGER_INTERFACE, OBJECT_PATH
from pxhostd.engine.history import History
from pxhostd.errors import Busy, InvalidOptions, InvalidSpec, NotInstalled, RolledBack

SPEC = {"payload": "/opt/demo/payload", "args": ["-c", "cluster1"], "env": {"A": "1"}}


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


def test_status_and_properties(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with (
            running_daemon(dbus_address, state_root),
            await PxClient.connect(dbus_address) as client,
        ):
            status = await client.status()
            assert status["daemon_version"] == __version__
            assert status["state"] == "idle"
            assert status["installed"] is False
            assert await client.get_property("Version") == __version__
            assert await client.get_property("State") == "idle"
            assert await client.get_property("ActiveTransaction") == "/"
            with pytest.raises(NotInstalled):
                await client.get_spec()

    run(body)


def test_install_runs_a_transaction_and_reports_nothing_changed(
    dbus_address: str, state_root: Path
) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            client = await PxClient.connect(dbus_address)
            seen: list[tuple[int, str]] = []
            path = await client.install(SPEC, txid="my-tx-1")
            assert path.startswith("/com/portworx/pxhostd1/transaction/")
            result = await client.wait(path, lambda p, m: seen.append((p, m)), timeout=10)
            raise_for_result(result)
            assert result["changed"] is True
            assert result["id"] == "my-tx-1"
            again = await client.wait(await client.install(SPEC), timeout=10)
            assert again["success"] is True and again["changed"] is False
            assert isinstance(daemon.engine, FakeEngine)
            assert [r.operation for r in daemon.engine.calls] == ["install", "install"]
            spec = await client.get_spec()
            assert spec["payload"] == SPEC["payload"]
            client.close()

    run(body)


def test_identical_request_joins_and_different_is_busy(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            engine = daemon.engine
            assert isinstance(engine, FakeEngine)
            engine.gate = asyncio.Event()
            a = await PxClient.connect(dbus_address)
            b = await PxClient.connect(dbus_address)
            path_a = await a.install(SPEC, txid="a")
            path_b = await b.install(SPEC, txid="b")
            assert path_a == path_b
            assert await a.get_property("ActiveTransaction") == path_a
            with pytest.raises(Busy) as busy:
                await b.install({**SPEC, "args": ["other"]})
            assert path_a in str(busy.value)
            # Both follow the running transaction: each has read it unfinished (its first
            # progress report) before the engine may finish.
            following = [asyncio.Event(), asyncio.Event()]
            waits = asyncio.gather(
                a.wait(path_a, lambda _p, _m: following[0].set(), timeout=10),
                b.wait(path_b, lambda _p, _m: following[1].set(), timeout=10),
            )
            await asyncio.wait_for(asyncio.gather(*(f.wait() for f in following)), 10)
            engine.gate.set()
            ra, rb = await waits
            assert ra == rb and ra["success"] is True
            assert len(engine.calls) == 1
            # A client that attaches after the end still reads the result.
            late = await PxClient.connect(dbus_address)
            assert (await late.wait(path_a, timeout=5))["success"] is True
            for c in (a, b, late):
                c.close()

    run(body)


def test_named_errors_reach_the_client(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            client = await PxClient.connect(dbus_address)
            result = await client.wait(await client.action("Restart"), timeout=10)
            with pytest.raises(NotInstalled):
                raise_for_result(result)
            assert result["error_name"] == "com.portworx.pxhostd1.Error.NotInstalled"
            await client.wait(await client.install({**SPEC, "args": ["boom"]}), timeout=10)
            result = await client.wait(await client.action("Restart"), timeout=10)
            with pytest.raises(RolledBack, match="v2 restored"):
                raise_for_result(result)
            assert "RolledBack" in await client.get_property("LastError")
            with pytest.raises(InvalidSpec):
                await client.install({"payload": "relative/path"})
            with pytest.raises(InvalidOptions, match="unknown option"):
                await client.call("Restart", "a{sv}", [{"bogus": Variant("s", "x")}])
            with pytest.raises(InvalidOptions, match="wipe"):
                await client.call("Uninstall", "a{sv}", [{"wipe": Variant("s", "yes")}])
            # The last operation (restart) was rolled back: the service runs as before, so
            # the daemon is not "failed"; LastError says what happened.
            assert daemon.state == "idle"
            client.close()

    run(body)


def test_properties_changed_is_emitted(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root):
            client = await PxClient.connect(dbus_address)
            changes: list[dict[str, Any]] = []

            def handler(msg: Message) -> None:
                if (
                    msg.message_type == MessageType.SIGNAL
                    and msg.member == "PropertiesChanged"
                    and msg.path == OBJECT_PATH
                    and msg.body[0] == MANAGER_INTERFACE
                ):
                    changes.append({k: v.value for k, v in msg.body[1].items()})

            client.bus.add_message_handler(handler)
            await client.add_match(
                f"type='signal',interface='org.freedesktop.DBus.Properties',path='{OBJECT_PATH}'"
            )
            await client.wait(await client.install(SPEC), timeout=10)

            def seen_states() -> list[str]:
                return [c["State"] for c in changes if "State" in c]

            await eventually(lambda: seen_states()[-1:] == ["idle"], "State back to idle")
            states = seen_states()
            assert "installing" in states and states[-1] == "idle"
            assert any(c.get("ActiveTransaction", "/") != "/" for c in changes)
            client.close()

    run(body)


def test_history_survives_a_daemon_restart(dbus_address: str, state_root: Path) -> None:
    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            client = await PxClient.connect(dbus_address)
            await client.wait(await client.install(SPEC, txid="kept-1"), timeout=10)
            await client.wait(await client.install(SPEC, txid="kept-2"), timeout=10)
            client.close()
            history_file = History(daemon.paths.history_file)
            await eventually(  # the append runs in a worker thread
                lambda: [e.txid for e in history_file.read(10)] == ["kept-1"], "kept-1 on disk"
            )
        async with running_daemon(dbus_address, state_root):
            client = await PxClient.connect(dbus_address)
            entries = await client.history(10)
            # kept-2 changed nothing: a no-op writes nothing, history included.
            assert [e["txid"] for e in entries] == ["kept-1"]
            assert entries[0]["result"] == "success"
            await client.wait(await client.action("Restart", txid="kept-3"), timeout=10)

            async def newest() -> bool:
                return [e["txid"] for e in await client.history(1)] == ["kept-3"]

            await eventually(newest, "kept-3 first in the history")
            assert [e["txid"] for e in await client.history(1)] == ["kept-3"]
            client.close()

    run(body)


def test_non_ascii_text_travels_both_ways(dbus_address: str, state_root: Path) -> None:
    """Debian 12's dbus-fast miscounts non-ASCII strings; pxhostd.bus.wire works around it."""

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            client = await PxClient.connect(dbus_address)
            spec = {**SPEC, "args": ["-c", "café-☃"], "env": {"NAMÉ": "ü"}}
            path = await client.install({**spec, "env": {"A": "ü"}})
            result = await client.wait(path, timeout=10)
            assert result["success"] is True
            assert (await client.get_spec())["args"] == ["-c", "café-☃"]
            assert isinstance(daemon.engine, FakeEngine)
            daemon.engine.fail_with = RolledBack("3.0 a échoué: « démo » ✗")
            failed = await client.wait(await client.action("Restart", txid="id-ü"), timeout=10)
            assert failed["error_message"] == "3.0 a échoué: « démo » ✗"
            assert failed["id"] == "id-ü"
            assert await client.get_property("LastError") == "RolledBack: 3.0 a échoué: « démo » ✗"
            with pytest.raises(InvalidSpec, match="NAMÉ"):
                await client.install(spec)
            assert (await client.status())["state"] == "idle"  # still connected, still up
            client.close()

    run(body)


def test_status_file_is_not_ready_while_an_operation_runs(
    dbus_address: str, state_root: Path
) -> None:
    from pxhostd.status.statusfile import read_status

    async def body() -> None:
        async with running_daemon(dbus_address, state_root) as daemon:
            engine = daemon.engine
            assert isinstance(engine, FakeEngine)
            client = await PxClient.connect(dbus_address)
            await client.wait(await client.install(SPEC), timeout=10)
            daemon.set_service_state("active/running")
            status_path = daemon.paths.status_file
            # The status writer runs after each change, off the loop.
            await eventually(lambda: read_status(status_path).ready, "READY=1 in the file")
            status = read_status(status_path)
            assert status.service_state == "active/running" and status.ready is True
            engine.gate = asyncio.Event()
            path = await client.action("Restart")
            await eventually(lambda: read_status(status_path).state == "busy", "STATE=busy")
            status = read_status(status_path)
            assert status.state == "busy" and status.ready is False  # a restart runs
            engine.gate.set()
            await client.wait(path, timeout=10)
            await eventually(lambda: read_status(status_path).state == "idle", "STATE=idle")
            status = read_status(status_path)
            assert status.state == "idle" and status.ready is True
            client.close()

    run(body)


def test_get_spec_shows_root_every_value(dbus_address: str, state_root: Path) -> None:
    """Root reads the spec whole; what others read is in test_hostile_callers."""

    async def body() -> None:
        async with running_daemon(dbus_address, state_root):
            client = await PxClient.connect(dbus_address)
            spec = {**SPEC, "env": {"PX_TOKEN": "s3cret", "PX_KVDB_USERPWD": "u:p", "A": "1"}}
            raise_for_result(await client.wait(await client.install(spec), timeout=10))
            shown = await client.get_spec()
            assert shown["env"] == {"A": "1", "PX_KVDB_USERPWD": "u:p", "PX_TOKEN": "s3cret"}
            client.close()

    run(body)
