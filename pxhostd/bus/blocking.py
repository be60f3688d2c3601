"""A blocking D-Bus connection for pxhostctl, on dbus-fast's message codec.

dbus-fast only has event-loop buses, and a command that makes three calls and exits spent
more time importing and starting asyncio than talking to pxhostd (`codec`). This bus speaks
the protocol on a plain socket instead: it authenticates with dbus-fast's EXTERNAL
authenticator, marshals with its `Message` and reads with its `Unmarshaller`; every wait is
a blocking read bounded by a deadline.

While a reply is awaited, signals that arrive are handed to the message handlers in order,
as the aio bus does; a method call addressed to the client is answered (a `Peer.Ping`, which
pxhostd's flow control sends to non-root callers, gets its reply; anything else an
UnknownMethod error).

`PxClient` runs on it unchanged: `call` and `Event.wait` are coroutines that never
suspend, so the client's coroutines are driven to the end without an event loop
(`run_to_end`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pxhostd.bus.codec import load_codec

load_codec()

from dbus_fast._private.address import get_bus_address, parse_address  # noqa: E402
from dbus_fast._private.unmarshaller import Unmarshaller  # noqa: E402
from dbus_fast.auth import Authenticator, AuthExternal  # noqa: E402
from dbus_fast.constants import BusType, ErrorType, MessageFlag, MessageType  # noqa: E402
from dbus_fast.errors import AuthError, InvalidAddressError  # noqa: E402
from dbus_fast.message import Message  # noqa: E402

from pxhostd.bus.wire import wire  # noqa: E402

T = TypeVar("T")
Handler = Callable[[Message], Any]

BUS_DAEMON = "org.freedesktop.DBus"
PEER = "org.freedesktop.DBus.Peer"
#: An authentication exchange is a few short lines; a peer sending more is not a bus.
MAX_AUTH_LINE = 16 << 10
#: How long the answer to a call addressed to us (a ping) may take to send.
ANSWER_TIMEOUT = 10.0


class BlockingBus:
    """One authenticated connection to a bus; not thread-safe (one command, one thread)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._serial = 0
        self._handlers: list[Handler] = []
        #: Kept across reads: a read that times out mid-message resumes where it stopped.
        self._unmarshaller = Unmarshaller(None, sock)  # type: ignore[arg-type]
        self.unique_name: str | None = None

    @classmethod
    def connect(cls, bus_address: str | None, bus_type: BusType, timeout: float) -> BlockingBus:
        """Connect, authenticate and say Hello; OSError or TimeoutError if that fails."""
        deadline = time.monotonic() + timeout
        try:
            addresses = parse_address(  # type: ignore[no-untyped-call]
                bus_address or get_bus_address(bus_type))  # type: ignore[no-untyped-call]
        except (InvalidAddressError, KeyError) as exc:
            raise OSError(f"no usable bus address ({exc})") from None
        sock = _open(addresses, timeout)
        bus = cls(sock)
        try:
            bus._authenticate(deadline)
            reply = bus.call_now(
                Message(destination=BUS_DAEMON, path="/org/freedesktop/DBus",
                        interface=BUS_DAEMON, member="Hello"),
                max(0.0, deadline - time.monotonic()))
            if reply.message_type != MessageType.METHOD_RETURN:
                raise OSError(f"the bus refused Hello: {reply.error_name}")
            bus.unique_name = str(reply.body[0])
        except BaseException:
            bus.disconnect()
            raise
        return bus

    # -- what PxClient uses ------------------------------------------------------------

    async def call(self, msg: Message, timeout: float) -> Message:
        """`call_now`, as a coroutine that never suspends."""
        return self.call_now(msg, timeout)

    def event(self) -> Event:
        return Event(self)

    def add_message_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def remove_message_handler(self, handler: Handler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    def disconnect(self) -> None:
        self._sock.close()

    # -- the protocol --------------------------------------------------------------------

    def call_now(self, msg: Message, timeout: float) -> Message:
        """Send a method call and read until its reply; TimeoutError past `timeout`,
        EOFError if the bus closes the connection."""
        deadline = time.monotonic() + timeout
        self._serial += 1
        msg.serial = self._serial
        self._send(msg, deadline)
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {msg.member} within {timeout:g} s")
            if (reply.message_type in (MessageType.METHOD_RETURN, MessageType.ERROR)
                    and reply.reply_serial == msg.serial):
                return reply
            self._dispatch(reply)

    def pump(self, until: Callable[[], bool], timeout: float | None) -> bool:
        """Hand incoming signals to the handlers until `until()` holds (True) or
        `timeout` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not until():
            msg = self._read(deadline)
            if msg is None:
                return until()
            self._dispatch(msg)
        return True

    def _send(self, msg: Message, deadline: float) -> None:
        """Send all of `msg` by `deadline` (a bus that stops reading cannot hang us)."""
        msg.body = wire(msg.body)
        self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
        self._sock.sendall(bytes(msg._marshall(False)))

    def _read(self, deadline: float | None) -> Message | None:
        """The next message, or None once `deadline` has passed."""
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                msg = self._unmarshaller.unmarshall()
            except TimeoutError:
                return None
            if msg is not None:
                self._unmarshaller.reset()
                return msg

    def _dispatch(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL:
            for handler in list(self._handlers):
                handler(msg)
        elif msg.message_type == MessageType.METHOD_CALL:
            self._answer(msg)
        # A late reply to a call that already timed out: nobody waits for it.

    def _answer(self, msg: Message) -> None:
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            return
        if msg.interface == PEER and msg.member == "Ping":
            reply = Message.new_method_return(msg)
        else:
            reply = Message.new_error(msg, ErrorType.UNKNOWN_METHOD.value,
                                      f"{msg.interface}.{msg.member} is not handled here")
        self._serial += 1
        reply.serial = self._serial
        self._send(reply, time.monotonic() + ANSWER_TIMEOUT)

    def _authenticate(self, deadline: float) -> None:
        auth = AuthExternal()
        self._sock.sendall(b"\0" + Authenticator._format_line(auth._authentication_start()))
        pending = b""
        while True:
            while b"\r\n" not in pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the bus did not finish authentication")
                self._sock.settimeout(left)
                chunk = self._sock.recv(4096)
                if not chunk:
                    raise EOFError("the bus closed the connection during authentication")
                pending += chunk
                if len(pending) > MAX_AUTH_LINE:
                    raise OSError("the bus sent an overlong authentication line")
            line, pending = pending.split(b"\r\n", 1)
            try:
                response = auth._receive_line(line.decode("ascii", "replace"))
            except AuthError as exc:
                raise OSError(str(exc)) from None
            self._sock.sendall(Authenticator._format_line(response))
            if response == "BEGIN":
                return


class Event:
    """Set by a message handler; waited for by reading the connection."""

    def __init__(self, bus: BlockingBus) -> None:
        self._bus = bus
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None) -> bool:
        """Read and dispatch until set (True) or `timeout` passes (False); never suspends."""
        return self._bus.pump(self.is_set, timeout)


def _open(addresses: list[tuple[str, dict[str, str]]], timeout: float) -> socket.socket:
    error: OSError | None = None
    for transport, options in addresses:
        if transport != "unix":
            error = OSError(f"unsupported bus transport {transport!r} (unix only)")
            continue
        target: str | bytes
        if "path" in options:
            target = options["path"]
        elif "abstract" in options:
            target = b"\0" + os.fsencode(options["abstract"])
        else:
            error = OSError("a unix bus address without path= or abstract=")
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError("no bus address")


def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose every await ends in BlockingBus I/O (so never suspends)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a coroutine driven on the blocking bus suspended")
