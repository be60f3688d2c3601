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
size for its per-caller limits) marshals each message once. Remove it when Debian's
dbus-fast carries both fixes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

#: The socket send buffer pxhostd asks for: bursts of replies wait in the kernel, not here.
SEND_BUFFER = 4 * 1024 * 1024


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


class BackpressureWriter:
    """FIFO of marshalled messages; writes what the socket takes, waits for the rest."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_error: Any) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._on_error = on_error
        self._queue: deque[tuple[memoryview, asyncio.Future[None] | None]] = deque()
        self._waiting = False  # a writer callback is registered with the loop
        self.queued_bytes = 0

    def enqueue(self, data: bytes | bytearray, future: asyncio.Future[None] | None) -> None:
        self._queue.append((memoryview(data), future))
        self.queued_bytes += len(data)
        if not self._waiting:
            self._write()

    def _write(self) -> None:
        try:
            while self._queue:
                buf, future = self._queue[0]
                try:
                    sent = self._sock.send(buf)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                self.queued_bytes -= sent
                if sent < len(buf):
                    # Full socket: keep the rest, first in line, and wait for writable.
                    self._queue[0] = (buf[sent:], future)
                    self._wait_writable()
                    return
                self._queue.popleft()
                if future is not None and not future.done():
                    future.set_result(None)
            self._stop_waiting()
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

    def _fail_all(self, exc: BaseException) -> None:
        while self._queue:
            _, future = self._queue.popleft()
            if future is not None and not future.done():
                future.set_exception(exc)
        self.queued_bytes = 0

    def close(self) -> None:
        self._stop_waiting()
        while self._queue:
            _, future = self._queue.popleft()
            if future is not None and not future.done():
                future.set_result(None)
        self.queued_bytes = 0
