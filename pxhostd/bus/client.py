"""Client library for com.portworx.pxhostd1: used by pxhostctl, the pod entrypoint and tests.

Errors come back as the same PxError classes the daemon raised (mapped by name in
`pxhostd.errors.error_from_dbus_name`), so callers never parse messages.

One client, two connections: the pod and the tests run it on the aio bus (`connect`,
`aiotransport`), pxhostctl on a blocking one (`connect_blocking`, `blocking`), which spares a
short command asyncio's start-up. The client's code is the same coroutines either way; only
a call with its timeout and an event to wait for come from the connection (`Transport`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from dbus_fast.constants import BusType, MessageType
from dbus_fast.message import Message
from dbus_fast.signature import Variant

from pxhostd.bus.names import (
    BUS_NAME,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    TRANSACTION_INTERFACE,
    TRANSACTION_PATH_PREFIX,
)
from pxhostd.errors import DaemonUnavailable, PxError, Timeout, error_from_dbus_name
from pxhostd.variants import to_vardict, unwrap

PROPERTIES = "org.freedesktop.DBus.Properties"
#: Bound on a single method call; long work runs in transactions, not in calls.
CALL_TIMEOUT = 30.0

ProgressCallback = Callable[[int, str], None]
#: How a caller that retries gets a fresh connected client.
Connect = Callable[[], Awaitable["PxClient"]]
#: How long a caller waits out a Busy daemon (another operation running) before giving up.
BUSY_WAIT = 600.0
#: Run while following a transaction, every `seconds` (pxhostctl redraws its live line).
Tick = tuple[float, Callable[[], Awaitable[None]]]


#: What either connection raises when the bus cannot be reached or refuses us.
_CONNECT_ERRORS = (TimeoutError, OSError, EOFError)


def _unreachable(exc: BaseException) -> DaemonUnavailable:
    return DaemonUnavailable(f"cannot connect to the D-Bus bus: {exc}")


class Event(Protocol):
    """Set by a message handler, awaited by the client."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self, timeout: float | None) -> bool:
        """True once set; False when `timeout` passed first."""
        ...


class Transport(Protocol):
    """What the client needs of a connection besides its message handlers."""

    async def call(self, msg: Message, timeout: float) -> Message | None:
        """The reply; TimeoutError past `timeout`, EOFError or OSError if the connection
        is lost."""
        ...

    def event(self) -> Event: ...


class PxClient:
    def __init__(self, bus: Any, transport: Transport) -> None:
        #: The connection itself (dbus-fast's aio MessageBus, or a BlockingBus): message
        #: handlers, unique_name, disconnect.
        self.bus = bus
        self._transport = transport

    @classmethod
    async def connect(
        cls, bus_address: str | None = None, bus_type: BusType = BusType.SYSTEM
    ) -> PxClient:
        from pxhostd.bus.aiotransport import connect_aio

        try:
            bus, transport = await connect_aio(bus_address, bus_type, CALL_TIMEOUT)
        except _CONNECT_ERRORS as exc:
            raise _unreachable(exc) from exc
        return cls(bus, transport)

    @classmethod
    def connect_blocking(
        cls, bus_address: str | None = None, bus_type: BusType = BusType.SYSTEM
    ) -> PxClient:
        """A client on a blocking connection: its coroutines are driven with
        `blocking.run_to_end`, without an event loop."""
        from pxhostd.bus.blocking import BlockingBus

        try:
            bus = BlockingBus.connect(bus_address, bus_type, CALL_TIMEOUT)
        except _CONNECT_ERRORS as exc:
            raise _unreachable(exc) from exc
        return cls(bus, bus)

    async def __aenter__(self) -> PxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bus.disconnect()

    # -- transport ---------------------------------------------------------------------

    async def call(
        self,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        path: str = OBJECT_PATH,
        interface: str = MANAGER_INTERFACE,
        destination: str = BUS_NAME,
    ) -> list[Any]:
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        try:
            reply = await self._transport.call(msg, CALL_TIMEOUT)
        except TimeoutError as exc:
            raise Timeout(f"pxhostd did not answer {member} within {CALL_TIMEOUT:.0f}s") from exc
        except (EOFError, OSError) as exc:
            # The bus drops a connection that sends an invalid message; say so plainly.
            raise DaemonUnavailable(
                f"the D-Bus connection was closed during {member} "
                f"({type(exc).__name__}: {exc or 'no details'})"
            ) from exc
        if reply is None:
            raise DaemonUnavailable(f"no reply to {member}")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name or "error"
            if reply.error_name == "org.freedesktop.DBus.Error.ServiceUnknown":
                text = "pxhostd is not running (no owner for com.portworx.pxhostd1)"
            elif reply.error_name == "org.freedesktop.DBus.Error.AccessDenied":
                # The bus daemon's own text is a dump of its matched rules; say what it means.
                text = f"access denied: {member} changes the host and needs root"
            raise error_from_dbus_name(str(reply.error_name or ""), str(text))
        return list(reply.body)

    async def get_property(
        self, name: str, *, path: str = OBJECT_PATH, interface: str = MANAGER_INTERFACE
    ) -> Any:
        (value,) = await self.call("Get", "ss", [interface, name], path=path, interface=PROPERTIES)
        return unwrap(value)

    async def get_all(
        self, *, path: str = OBJECT_PATH, interface: str = MANAGER_INTERFACE
    ) -> dict[str, Any]:
        (values,) = await self.call("GetAll", "s", [interface], path=path, interface=PROPERTIES)
        result: dict[str, Any] = unwrap(values)
        return result

    async def add_match(self, rule: str) -> None:
        await self.call(
            "AddMatch",
            "s",
            [rule],
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            destination="org.freedesktop.DBus",
        )

    # -- Manager -----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        (values,) = await self.call("Status")
        result: dict[str, Any] = unwrap(values)
        return result

    async def get_spec(self) -> dict[str, Any]:
        (values,) = await self.call("GetSpec")
        result: dict[str, Any] = unwrap(values)
        return result

    async def history(self, limit: int = 20) -> list[dict[str, Any]]:
        (entries,) = await self.call("History", "u", [limit])
        result: list[dict[str, Any]] = unwrap(entries)
        return result

    async def install(self, spec: Mapping[str, Any], txid: str | None = None) -> str:
        (path,) = await self.call("Install", "a{sv}a{sv}", [to_vardict(spec), _options(txid)])
        return str(path)

    async def action(self, operation: str, txid: str | None = None) -> str:
        """Start, Stop, Restart, Enable, Disable or Reconcile."""
        (path,) = await self.call(operation, "a{sv}", [_options(txid)])
        return str(path)

    async def plan(self, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What Install(spec) would change, and why; an empty spec: the desired state."""
        (result,) = await self.call("Plan", "a{sv}a{sv}", [to_vardict(spec or {}), {}])
        out: dict[str, Any] = unwrap(result)
        return out

    async def rollback(self, txid: str | None = None) -> str:
        (path,) = await self.call("Rollback", "a{sv}", [_options(txid)])
        return str(path)

    async def transaction_paths(self) -> list[str]:
        """Object paths of the transactions pxhostd still exports (running or recent)."""
        import xml.etree.ElementTree as ET

        (xml,) = await self.call(
            "Introspect",
            path=TRANSACTION_PATH_PREFIX,
            interface="org.freedesktop.DBus.Introspectable",
        )
        try:
            root = ET.fromstring(str(xml))
        except ET.ParseError:
            return []
        return [
            f"{TRANSACTION_PATH_PREFIX}/{node.get('name')}"
            for node in root.findall("node")
            if node.get("name")
        ]

    async def uninstall(self, wipe: bool = False, txid: str | None = None) -> str:
        options = _options(txid)
        options["wipe"] = Variant("b", wipe)
        (path,) = await self.call("Uninstall", "a{sv}", [options])
        return str(path)

    # -- transactions ------------------------------------------------------------------

    async def wait(
        self,
        path: str,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
        tick: Tick | None = None,
    ) -> dict[str, Any]:
        """Follow a transaction to its end and return its result (works for late joiners).

        The match is added before the first read, so a Finished signal can't slip between.
        """
        finished = self._transport.event()
        failure: list[PxError] = []

        def handler(msg: Message) -> None:
            if msg.message_type != MessageType.SIGNAL:
                return
            if (
                msg.member == "NameOwnerChanged"
                and msg.body
                and msg.body[0] == BUS_NAME
                and not msg.body[2]
                and not finished.is_set()
            ):
                failure.append(DaemonUnavailable(
                    f"pxhostd exited while {path} was running; it recovers the host at "
                    "its next start (see `pxhostctl history`)"
                ))
                finished.set()
                return
            if msg.path != path:
                return
            if msg.member == "Progress" and on_progress is not None:
                on_progress(int(msg.body[0]), str(msg.body[1]))
            elif msg.member == "Finished":
                finished.set()

        self.bus.add_message_handler(handler)
        try:
            await self.add_match(
                "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                f"arg0='{BUS_NAME}'"
            )
            await self.add_match(
                f"type='signal',sender='{BUS_NAME}',path='{path}',"
                f"interface='{TRANSACTION_INTERFACE}'"
            )
            props = await self.get_all(path=path, interface=TRANSACTION_INTERFACE)
            if not props.get("Finished"):
                if on_progress is not None:
                    on_progress(int(props.get("Percent", 0)), str(props.get("Message", "")))
                if not await _wait_ticking(finished, timeout, tick):
                    raise Timeout(f"transaction {path} did not finish in {timeout}s")
                if failure:
                    raise failure[0]
            (result,) = await self.call("GetResult", path=path, interface=TRANSACTION_INTERFACE)
            out: dict[str, Any] = unwrap(result)
            return out
        finally:
            self.bus.remove_message_handler(handler)

    async def listen(self) -> None:
        """Hand signals to the message handlers until the connection ends."""
        await self._transport.event().wait(None)


async def _wait_ticking(event: Event, timeout: float | None, tick: Tick | None) -> bool:
    """`event.wait(timeout)`, running `tick` every so often meanwhile."""
    if tick is None:
        return await event.wait(timeout)
    every, job = tick
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = every if deadline is None else min(every, deadline - time.monotonic())
        if step <= 0:
            return event.is_set()
        if await event.wait(step):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        await job()


def _options(txid: str | None) -> dict[str, Variant]:
    return {"id": Variant("s", txid)} if txid else {}


def raise_for_result(result: Mapping[str, Any]) -> None:
    """Turn a failed transaction result into its PxError."""
    if not result.get("success"):
        raise error_from_dbus_name(
            str(result.get("error_name", "")), str(result.get("error_message", "failed"))
        )
