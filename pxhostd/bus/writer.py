"""The socket writer of pxhostd's bus connection: a full socket is back-pressure, not death.

Debian 12's dbus-fast (1.84) has two bugs in `dbus_fast.aio.message_bus._MessageWriter`:

- `write_callback` treats `BlockingIOError` (EAGAIN: the send buffer is full because the bus
  daemon reads slowly) and `InterruptedError` (EINTR) as fatal and closes the connection.
  Known upstream as python-dbus-next issue 153, fixed by its PR 154 ("Aio write_callback
  terminates connection upon EAGAIN"): leave the unsent rest queued and wait until the
  socket is writable again. dbus-fast inherited the bug from dbus-next and its aio writer
  still has it upstream; the glib writer there already treats BlockingIOError as "wait".
- It takes the next message from the wrong end of its queue (`pop`), so queued messages go
  out newest first. Fixed in dbus-fast 1.91.3 (PR 225, "messages could be sent out of
  order if they had to queue"): `popleft`.

`BackpressureWriter` is that writer with both fixes, installed by `PxMessageBus` in this
one place. It also takes already-marshalled bytes, so the caller (which needs a reply's
size for its per-caller limits) marshals each message once. Remove the fixes when Debian's
dbus-fast carries them; the two lanes below are pxhostd's own and stay.

**Two lanes.** The bus daemon reads pxhostd's socket in its main loop, 2 KiB per connection
per turn; a local user flooding the bus makes each turn slow (measured: about 20 KiB/s
taken from pxhostd's socket). Whatever sits in the socket's kernel buffer then delays
everything written after it: with replies to non-reading clients filling a deep buffer,
root's reply and pxhostd's own calls waited there for tens of seconds. So messages go out
in two lanes: *urgent* (replies to root, signals, pxhostd's calls to systemd and the bus)
always first, and *bulk* (replies to other callers and the pings that pace them) handed
to the socket only while what it holds unread (`SIOCOUTQ`) is below `BULK_OUTQ`. An urgent
message so waits behind at most `BULK_OUTQ` of bulk bytes, never behind a backlog. Each
lane keeps its own order; a message half written always finishes first (the byte stream
must stay whole).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import socket
import termios
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

#: The socket send buffer pxhostd asks for: bursts of urgent messages wait in the kernel.
SEND_BUFFER = 4 * 1024 * 1024
#: Bulk bytes go to the socket only while it holds less than this unread (kernel
#: accounting: each queued message counts its payload plus some hundred bytes).
BULK_OUTQ = 8 * 1024
#: Seconds between looks at the socket while bulk waits for it to drain below BULK_OUTQ.
BULK_POLL = 0.005

_Item = tuple[memoryview, "asyncio.Future[None] | None"]


def enlarge_send_buffer(sock: socket.socket, size: int = SEND_BUFFER) -> int:
    """Ask for a `size` send buffer (root may exceed net.core.wmem_max); the size granted."""
    force = getattr(socket, "SO_SNDBUFFORCE", 32)
    for option in (force, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def unread_bytes(fd: int) -> int:
    """What the socket holds that its peer has not read yet (SIOCOUTQ == TIOCOUTQ)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.TIOCOUTQ, buf, True)
    return int(buf[0])


class BackpressureWriter:
    """Two FIFOs of marshalled messages (urgent first); writes what the socket takes."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_error: Any, *, bulk_outq: int = BULK_OUTQ) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._on_error = on_error
        self._bulk_outq = bulk_outq
        self._urgent: deque[_Item] = deque()
        self._bulk: deque[_Item] = deque()
        self._head: _Item | None = None  # half written: finishes before anything else
        self._waiting = False  # a writer callback is registered with the loop
        self._poll: asyncio.TimerHandle | None = None
        self.queued_bytes = 0
        self.bulk_waits = 0  # times bulk waited for the socket to drain (for tests, benches)

    @property
    def queued_bulk_bytes(self) -> int:
        return sum(len(buf) for buf, _ in self._bulk)

    def enqueue(self, data: bytes | bytearray, future: asyncio.Future[None] | None) -> None:
        """An urgent message: out before any bulk message not yet begun."""
        self._add(self._urgent, data, future)

    def enqueue_bulk(self, data: bytes | bytearray, future: asyncio.Future[None] | None) -> None:
        """A bulk message: out when no urgent one waits and the socket is nearly drained."""
        self._add(self._bulk, data, future)

    def _add(self, lane: deque[_Item], data: bytes | bytearray,
             future: asyncio.Future[None] | None) -> None:
        lane.append((memoryview(data), future))
        self.queued_bytes += len(data)
        if not self._waiting:
            self._write()

    def _next(self) -> _Item | None:
        if self._head is not None:
            return self._head
        if self._urgent:
            return self._urgent.popleft()
        if self._bulk and unread_bytes(self._fd) < self._bulk_outq:
            return self._bulk.popleft()
        return None

    def _write(self) -> None:
        self._cancel_poll()
        try:
            while (item := self._next()) is not None:
                buf, future = item
                try:
                    sent = self._sock.send(buf)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                self.queued_bytes -= sent
                if sent < len(buf):
                    # Full socket: keep the rest, first in line, and wait for writable.
                    self._head = (buf[sent:], future)
                    self._wait_writable()
                    return
                self._head = None
                if future is not None and not future.done():
                    future.set_result(None)
            self._stop_waiting()
            if self._bulk:  # the socket holds enough unread: look again shortly
                self.bulk_waits += 1
                self._poll = self._loop.call_later(BULK_POLL, self._write)
        except Exception as exc:  # a real error (the bus closed the socket): report it
            self._stop_waiting()
            self._fail_all(exc)
            self._on_error(exc)

    def _wait_writable(self) -> None:
        if not self._waiting:
            self._loop.add_writer(self._fd, self._write)
            self._waiting = True

    def _stop_waiting(self) -> None:
        if self._waiting:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._fd)
            self._waiting = False

    def _cancel_poll(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _drain(self) -> list[asyncio.Future[None] | None]:
        futures = [f for _, f in ([self._head] if self._head else [])]
        futures += [f for _, f in self._urgent] + [f for _, f in self._bulk]
        self._head = None
        self._urgent.clear()
        self._bulk.clear()
        self.queued_bytes = 0
        return futures

    def _fail_all(self, exc: BaseException) -> None:
        self._cancel_poll()
        for future in self._drain():
            if future is not None and not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        self._stop_waiting()
        self._cancel_poll()
        for future in self._drain():
            if future is not None and not future.done():
                future.set_result(None)
