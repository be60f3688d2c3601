"""pxhostctl's blocking bus connection against a real dbus-daemon: calls, signals handed to
the handlers while a reply is awaited, pings answered, a timed-out read resumed, a lost
bus named; and the codec-only import that spares a command asyncio."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method, signal

from pxhostd.bus.blocking import BlockingBus, run_to_end
from pxhostd.bus.client import PxClient
from pxhostd.errors import DaemonUnavailable

PEER_NAME = "com.example.BlockingPeer"
PATH = "/com/example/Peer"
IFACE = "com.example.Peer"


class Peer(ServiceInterface):
    """A service that echoes, answers late or never, and signals before it replies."""

    def __init__(self) -> None:
        super().__init__(IFACE)
        self.release = asyncio.Event()

    @method()
    def Echo(self, text: "s") -> "s":
        return text

    @method()
    def Utf8Length(self, text: "s") -> "u":
        return len(text.encode())

    @method()
    async def SignalThenReply(self, count: "u") -> "u":
        for i in range(count):
            self.Tick(i)
        await asyncio.sleep(0.05)
        return count

    @method()
    async def Late(self) -> "s":
        await self.release.wait()
        return "late"

    @signal()
    def Tick(self, n: "u") -> "u":
        return n


def echo(text: str) -> Message:
    return Message(destination=PEER_NAME, path=PATH, interface=IFACE, member="Echo",
                   signature="s", body=[text])


async def serving(address: str) -> tuple[MessageBus, Peer]:
    bus = await MessageBus(bus_address=address).connect()
    peer = Peer()
    bus.export(PATH, peer)
    await bus.request_name(PEER_NAME)
    return bus, peer


def test_calls_signals_and_non_ascii(dbus_address: str) -> None:
    async def scenario() -> None:
        service, _peer = await serving(dbus_address)
        try:
            def client() -> tuple[int, list[int], int]:
                bus = BlockingBus.connect(dbus_address, BusType.SESSION, 10)
                try:
                    assert bus.unique_name and bus.unique_name.startswith(":")
                    seen: list[int] = []
                    bus.add_message_handler(
                        lambda m: seen.append(int(m.body[0])) if m.member == "Tick" else None)
                    match = Message(destination="org.freedesktop.DBus",
                                    path="/org/freedesktop/DBus",
                                    interface="org.freedesktop.DBus", member="AddMatch",
                                    signature="s",
                                    body=[f"type='signal',interface='{IFACE}'"])
                    assert bus.call_now(match, 10).message_type == MessageType.METHOD_RETURN
                    # A non-ASCII string: the bus daemon drops a malformed message's sender
                    # (dbus-fast 1.84 wrote its length in characters; `wire` fixes it).
                    length = bus.call_now(
                        Message(destination=PEER_NAME, path=PATH, interface=IFACE,
                                member="Utf8Length", signature="s", body=["café ✓ 中文"]), 10)
                    count = bus.call_now(
                        Message(destination=PEER_NAME, path=PATH, interface=IFACE,
                                member="SignalThenReply", signature="u", body=[5]), 10)
                    return int(length.body[0]), seen, int(count.body[0])
                finally:
                    bus.disconnect()

            length, seen, count = await asyncio.to_thread(client)
            assert length == len("café ✓ 中文".encode())
            assert count == 5
            assert seen == [0, 1, 2, 3, 4], "signals sent before the reply reach the handlers"
        finally:
            service.disconnect()

    asyncio.run(scenario())


def test_answers_pings_while_waiting(dbus_address: str) -> None:
    """pxhostd's flow control pings a non-root caller; the client must answer it."""

    async def scenario() -> None:
        service, _peer = await serving(dbus_address)
        try:
            ready = threading.Event()
            names: list[str] = []
            done = threading.Event()

            def client() -> bool:
                bus = BlockingBus.connect(dbus_address, BusType.SESSION, 10)
                try:
                    assert bus.unique_name is not None
                    names.append(bus.unique_name)
                    ready.set()
                    return bus.pump(done.is_set, 10)
                finally:
                    bus.disconnect()

            waiting = asyncio.ensure_future(asyncio.to_thread(client))
            await asyncio.to_thread(ready.wait, 10)
            ping = await asyncio.wait_for(service.call(Message(
                destination=names[0], path="/", interface="org.freedesktop.DBus.Peer",
                member="Ping")), 10)
            other = await asyncio.wait_for(service.call(Message(
                destination=names[0], path="/", interface="com.example.Nothing",
                member="Frob")), 10)
            done.set()
            # The pump looks at `done` after the next message: send it one.
            await service.call(Message(destination=names[0], path="/",
                                       interface="org.freedesktop.DBus.Peer", member="Ping"))
            assert await asyncio.wait_for(waiting, 10) is True
            assert ping is not None and ping.message_type == MessageType.METHOD_RETURN
            assert other is not None and other.message_type == MessageType.ERROR
            assert other.error_name == "org.freedesktop.DBus.Error.UnknownMethod"
        finally:
            service.disconnect()

    asyncio.run(scenario())


def test_a_timed_out_call_leaves_the_connection_usable(dbus_address: str) -> None:
    async def scenario() -> None:
        service, peer = await serving(dbus_address)
        loop = asyncio.get_running_loop()
        try:
            def client() -> tuple[str, str]:
                bus = BlockingBus.connect(dbus_address, BusType.SESSION, 10)
                try:
                    late = Message(destination=PEER_NAME, path=PATH, interface=IFACE,
                                   member="Late")
                    with pytest.raises(TimeoutError):
                        bus.call_now(late, 0.3)
                    loop.call_soon_threadsafe(peer.release.set)  # its reply comes late
                    first = str(bus.call_now(echo("after"), 10).body[0])
                    second = str(bus.call_now(echo("x" * 100_000), 10).body[0])
                    return first, second
                finally:
                    bus.disconnect()

            first, second = await asyncio.to_thread(client)
            assert first == "after", "the late reply was skipped, the next one read whole"
            assert second == "x" * 100_000
        finally:
            service.disconnect()

    asyncio.run(scenario())


def test_lost_bus_and_unreachable_bus_are_named(dbus_address: str, tmp_path: Any) -> None:
    with pytest.raises(DaemonUnavailable, match="cannot connect"):
        PxClient.connect_blocking(f"unix:path={tmp_path}/none.sock", BusType.SESSION)
    client = PxClient.connect_blocking(dbus_address, BusType.SESSION)
    client.bus._sock.shutdown(2)  # the bus going away looks like this to the client
    with pytest.raises(DaemonUnavailable, match="connection was closed"):
        run_to_end(client.status())
    client.close()


def test_run_to_end_refuses_a_coroutine_that_suspends() -> None:
    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_to_end(suspends())


def test_the_cli_imports_no_event_loop_and_the_full_library_still_loads() -> None:
    code = (
        "import sys\n"
        "import pxhostd.cli.main\n"
        "def codec_only():  # the package's __init__ has not run\n"
        "    return '__getattr__' in vars(sys.modules['dbus_fast'])\n"
        "assert 'asyncio' not in sys.modules, 'the CLI imported asyncio'\n"
        "assert codec_only(), 'the dbus_fast package __init__ ran'\n"
        "from dbus_fast import Message, Variant\n"
        "import dbus_fast.aio\n"
        "assert not codec_only() and dbus_fast.aio.MessageBus.__name__ == 'MessageBus'\n"
        "assert dbus_fast.message.Message is Message\n"
        "assert Variant('s', 'x').value == 'x'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
