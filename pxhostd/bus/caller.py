"""Who asked: the sender of the Manager call that started a transaction, as uid and client.

dbus-fast hands a method no message, so a message handler notes the sender of each
Manager method call just before dbus-fast dispatches it (handlers run first, and a
synchronous method runs in the same step). The bus daemon then says the sender's uid and
pid (GetConnectionUnixUser/ProcessID); the client's name is the pid's `comm`, which for
pxhostctl and pxhostd-pod is the program's name. Every part is best effort: the journal
line says "unknown" rather than fail a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from dbus_fast import Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

from pxhostd.bus.names import MANAGER_INTERFACE


@dataclass(frozen=True)
class Caller:
    sender: str = ""
    uid: int | None = None
    pid: int | None = None
    client: str = ""

    def __str__(self) -> str:
        if self.sender == "":
            return "pxhostd itself"
        who = f"uid {self.uid}" if self.uid is not None else "unknown uid"
        via = self.client or "unknown client"
        if self.pid is not None:
            via += f", pid {self.pid}"
        return f"{who} via {via}"


def _comm(pid: int) -> str:
    """The program name of a process (a file read: run it off the event loop)."""
    with (
        contextlib.suppress(OSError),
        open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f,
    ):
        return f.read().strip()
    return ""


class CallerTracker:
    """Remembers the sender of the Manager call being dispatched right now."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.current = ""
        bus.add_message_handler(self._note)

    def _note(self, msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_CALL and msg.interface == MANAGER_INTERFACE:
            self.current = msg.sender or ""

    def take(self) -> str:
        """The sender of the call in dispatch; "" (pxhostd itself) outside of one."""
        sender, self.current = self.current, ""
        return sender

    async def describe(self, sender: str) -> Caller:
        if not sender:
            return Caller()
        uid = await self._ask("GetConnectionUnixUser", sender)
        pid = await self._ask("GetConnectionUnixProcessID", sender)
        client = await asyncio.to_thread(_comm, pid) if pid is not None else ""
        return Caller(sender, uid, pid, client)

    async def _ask(self, member: str, sender: str) -> int | None:
        with contextlib.suppress(Exception):
            reply = await self._bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member=member,
                    signature="s",
                    body=[sender],
                )
            )
            if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
                return int(reply.body[0])
        return None
