"""The only module that touches dbus-fast objects: method calls, match rules, signals.

dbus-fast's message bodies are untyped, so they stay here: calls return plain Python
values (variants unwrapped) that callers narrow, and signals arrive as a typed `Signal`.
Raw messages are used instead of proxy objects because they need no introspection round
trip and the signatures are spelled out at each call site, exactly as systemd documents
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from dbus_fast import Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

from pxhostd.errors import PxError, Timeout
from pxhostd.systemd import constants as c
from pxhostd.systemd.errors import error_from_reply, error_from_transport
from pxhostd.variants import unwrap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signal:
    sender: str
    path: str
    interface: str
    member: str
    body: tuple[object, ...]


SignalHandler = Callable[[Signal], None]


@contextlib.asynccontextmanager
async def bounded(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound everything inside; expiry becomes the named pxhostd Timeout."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise Timeout(f"{what}: no result within {seconds:g} s") from exc


def match_rule(**fields: str) -> str:
    """A D-Bus match rule; values come from our own constants and escaped unit paths."""
    return ",".join(f"{key}='{value}'" for key, value in fields.items())


class Transport:
    """One connection's view for the systemd client; the bus itself is owned elsewhere."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._handlers: list[SignalHandler] = []
        self._installed = False

    @property
    def unique_name(self) -> str:
        return str(self._bus.unique_name)

    async def call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[object] = (),
        *,
        destination: str = c.BUS_NAME,
        what: str,
    ) -> tuple[object, ...]:
        """Call a method; an error reply or a broken connection raises a PxError."""
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
        try:
            reply = await self._bus.call(message)
        except PxError:
            raise
        except Exception as exc:  # a dead bus surfaces as OSError, EOFError or dbus-fast's own
            raise error_from_transport(exc, what) from exc
        if reply is None:
            raise error_from_transport(RuntimeError("no reply message"), what)
        if reply.message_type == MessageType.ERROR:
            text = str(reply.body[0]) if reply.body else ""
            raise error_from_reply(str(reply.error_name), text, what)
        return tuple(unwrap(v) for v in reply.body)

    async def call_bus(self, member: str, signature: str, body: Sequence[object]) -> None:
        """A call to the bus daemon itself (AddMatch, RemoveMatch)."""
        await self.call(
            c.DBUS_PATH, c.DBUS_INTERFACE, member, signature, body,
            destination=c.DBUS_NAME, what=f"{c.DBUS_INTERFACE}.{member}",
        )

    async def add_match(self, rule: str) -> None:
        await self.call_bus(c.ADD_MATCH, "s", [rule])

    async def remove_match(self, rule: str) -> None:
        """Best effort: a closing or dead connection drops its matches anyway."""
        try:
            await self.call_bus(c.REMOVE_MATCH, "s", [rule])
        except PxError as exc:
            log.debug("RemoveMatch %s failed: %s", rule, exc)

    async def name_owner(self, name: str) -> str:
        (owner,) = await self.call(
            c.DBUS_PATH, c.DBUS_INTERFACE, c.GET_NAME_OWNER, "s", [name],
            destination=c.DBUS_NAME, what=f"owner of {name}",
        )
        return str(owner)

    def add_signal_handler(self, handler: SignalHandler) -> None:
        self._handlers.append(handler)
        if not self._installed:
            self._bus.add_message_handler(self._on_message)
            self._installed = True

    def remove_signal_handler(self, handler: SignalHandler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)
        if not self._handlers and self._installed:
            self._bus.remove_message_handler(self._on_message)
            self._installed = False

    def _on_message(self, message: Message) -> None:
        # Returns None: other users of the shared bus must see the message too.
        if message.message_type != MessageType.SIGNAL:
            return
        signal = Signal(
            sender=str(message.sender or ""),
            path=str(message.path or ""),
            interface=str(message.interface or ""),
            member=str(message.member or ""),
            body=tuple(unwrap(v) for v in message.body),
        )
        for handler in list(self._handlers):
            try:
                handler(signal)
            except Exception:  # one broken callback must not starve the others
                log.exception("signal handler %r failed on %s", handler, signal.member)
