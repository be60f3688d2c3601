"""pxhostd's system-bus connection: the one way out for every message it sends.

`PxMessageBus.send` is the chokepoint. Every outgoing message (method replies, errors,
signals, properties, pxhostd's own calls) passes it, so no call site can forget what
every message needs:

1. **Who reads it.** A reply goes to one caller; its uid comes from `Callers`. Root gets
   the message as it is; any other caller, and every signal (which anyone may receive),
   gets the public view (`views.public_body`: env names only, secret arguments redacted,
   no journal lines).
2. **Non-ASCII** strings are fixed for dbus-fast 1.84's marshaller (`wire.wire`).
3. **Back-pressure.** Replies to non-root callers go through `FlowControl` (a client that
   never reads costs bounded memory and cannot stall the bus); the socket writer keeps
   what a full socket does not take (`writer.BackpressureWriter`).
4. **Root first.** Replies to root, signals and pxhostd's own calls take the writer's
   urgent lane; replies to other callers, and the pings that pace them (which must stay
   behind those replies to confirm them), take the bulk lane, which never fills the
   socket ahead of an urgent message.

Large incoming messages are followed by `malloc_trim`, so the memory they took goes back to
the system instead of staying with pxhostd (`memory.release_after`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio.message_bus import MessageBus

from pxhostd.bus.callers import ROOT, Callers
from pxhostd.bus.flow import HELD_MAX, WINDOW_MESSAGES, FlowControl
from pxhostd.bus.memory import LargeMessageTrimmer
from pxhostd.bus.views import public_body
from pxhostd.bus.wire import wire
from pxhostd.bus.writer import BackpressureWriter, enlarge_send_buffer

log = logging.getLogger(__name__)

BUS_DAEMON = "org.freedesktop.DBus"
PEER = "org.freedesktop.DBus.Peer"
NAME_OWNER_MATCH = (
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='NameOwnerChanged'"
)


#: Replies that may wait for a new caller's uid; more calls meanwhile are shed unanswered.
AWAITING_UID_MAX = WINDOW_MESSAGES + HELD_MAX
#: Introspection XML kept per exported path (the manager and the retained transactions).
INTROSPECT_CACHE = 64


class _NoWriter:
    """Stands in for dbus-fast's writer, which `connect()` still pokes once."""

    def schedule_write(self, *args: object) -> None:
        return None


class PxMessageBus(MessageBus):
    """An aio MessageBus whose every outgoing message is viewed, fixed and paced here."""

    def __init__(self, bus_address: str | None = None, bus_type: BusType = BusType.SYSTEM,
                 *, per_caller_views: bool = True) -> None:
        """`per_caller_views=False` for a client: no callers to tell apart, nothing to pace."""
        super().__init__(bus_address=bus_address, bus_type=bus_type)  # type: ignore[arg-type]
        self._px_writer = BackpressureWriter(self._sock, self._loop, self._finalize)
        # dbus-fast's own writer must never touch the socket again (it would unregister ours).
        self._writer = _NoWriter()  # type: ignore[assignment]
        self.callers = Callers(self._call)
        self.flow = FlowControl(self._px_writer.enqueue_bulk, self._ping)
        self.send_buffer = enlarge_send_buffer(self._sock)
        self._per_caller_views = per_caller_views
        self._trimmer = LargeMessageTrimmer()
        self._introspection: dict[str, str] = {}
        self._awaiting_uid: dict[str, int] = {}

    @property
    def queued_bytes(self) -> int:
        """Bytes marshalled but not yet taken by the socket."""
        return self._px_writer.queued_bytes

    async def connect(self) -> PxMessageBus:
        await super().connect()
        self.add_message_handler(self._observe)
        if not self._per_caller_views:
            return self
        reply = await self.call(
            Message(destination=BUS_DAEMON, path="/org/freedesktop/DBus",
                    interface=BUS_DAEMON, member="AddMatch", signature="s",
                    body=[NAME_OWNER_MATCH])
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise ConnectionError("the bus refused a NameOwnerChanged match")
        return self

    # -- incoming ------------------------------------------------------------------------

    def _observe(self, msg: Message) -> bool:
        """Learn a caller's uid as its call arrives; shed calls of a caller that does not
        read (True: handled, nothing done, no reply); forget peers that leave."""
        self._trimmer.saw(msg)
        if msg.message_type == MessageType.METHOD_CALL:
            if self._per_caller_views and msg.sender and msg.sender.startswith(":"):
                self.callers.uid(msg.sender)
                waiting = self._awaiting_uid.get(msg.sender, 0)
                if waiting >= AWAITING_UID_MAX or self.flow.shedding(msg.sender):
                    self.flow.shed += 1
                    return True
        elif (
            msg.message_type == MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == BUS_DAEMON
            and msg.body
            and str(msg.body[0]).startswith(":")
            and not msg.body[2]
        ):
            name = str(msg.body[0])
            self.callers.forget(name)
            self.flow.forget(name)
        return False

    # -- outgoing ------------------------------------------------------------------------

    def send(self, msg: Message) -> asyncio.Future[None]:  # type: ignore[override]
        if not msg.serial:
            msg.serial = self.next_serial()
        future: asyncio.Future[None] = self._loop.create_future()
        if self._disconnected:
            closed = ConnectionError("the bus connection is closed")
            future.set_exception(closed)
            future.exception()  # a fire-and-forget send (a signal) need not look at it
            # A call on a dead connection fails now: its reply would never come, and a
            # caller awaiting it (a systemd query during shutdown) would hang.
            handler = self._method_return_handlers.pop(msg.serial, None)
            if handler is not None:
                self._loop.call_soon(handler, None, closed)
            return future
        dest = msg.destination
        is_reply = msg.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR)
        if is_reply and dest and dest.startswith(":") and self._per_caller_views:
            uid = self.callers.uid(dest)
            if uid.done():
                self._reply(msg, dest, uid.result(), future)
            else:
                self._awaiting_uid[dest] = self._awaiting_uid.get(dest, 0) + 1
                uid.add_done_callback(lambda f: self._reply_later(msg, dest, f, future))
            return future
        if msg.message_type == MessageType.SIGNAL:
            msg.body = public_body(msg.body)
        if self._is_pacing_ping(msg):
            self._px_writer.enqueue_bulk(self._marshal(msg), future)
        else:
            self._px_writer.enqueue(self._marshal(msg), future)
        return future

    def _is_pacing_ping(self, msg: Message) -> bool:
        """A flow-control ping to a caller (`_ping`): it confirms the replies sent before
        it, so it must leave after them, in their lane."""
        return (self._per_caller_views and msg.message_type == MessageType.METHOD_CALL
                and msg.interface == PEER and msg.member == "Ping"
                and bool(msg.destination) and str(msg.destination).startswith(":"))

    def _reply_later(self, msg: Message, dest: str, uid: asyncio.Future[int | None],
                     future: asyncio.Future[None]) -> None:
        self._awaiting_uid.pop(dest, None)
        self._reply(msg, dest, uid.result(), future)

    def _reply(self, msg: Message, dest: str, uid: int | None,
               future: asyncio.Future[None]) -> None:
        if self._disconnected or uid is None:  # the caller has gone: nobody to answer
            if not future.done():
                future.set_result(None)
            return
        if uid == ROOT:
            self._px_writer.enqueue(self._marshal(msg), future)
            return
        msg.body = public_body(msg.body)
        self.flow.admit(dest, uid, self._marshal(msg), future)

    def _marshal(self, msg: Message) -> bytes:
        msg.body = wire(msg.body)
        return bytes(msg._marshall(False))

    def _ping(self, name: str, answered: Any) -> None:
        def done(reply: Message | None, err: Exception | None) -> None:
            # Any answer *from the peer* (even UnknownMethod) proves it read up to here.
            answered(reply is not None and reply.sender == name)

        self._call(
            Message(destination=name, path="/", interface=PEER, member="Ping"),
            done,
        )

    # -- introspection, cached --------------------------------------------------------------

    def _default_introspect_handler(self, msg: Message, send_reply: Any) -> None:
        """Introspection XML is rebuilt only when the exported objects change."""
        path = str(msg.path)
        xml = self._introspection.get(path)
        if xml is None:
            xml = self._introspect_export_path(path).tostring()
            if path in self._path_exports and len(self._introspection) < INTROSPECT_CACHE:
                self._introspection[path] = xml
        send_reply(Message.new_method_return(msg, "s", [xml]))

    def export(self, path: str, interface: Any) -> None:
        self._introspection.clear()
        super().export(path, interface)

    def unexport(self, path: str, interface: Any = None) -> None:
        self._introspection.clear()
        super().unexport(path, interface)

    def _finalize(self, err: Exception | None = None) -> None:
        writer = getattr(self, "_px_writer", None)
        if writer is not None:
            writer.close()
        super()._finalize(err)
