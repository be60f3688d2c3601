"""The legacy health endpoint on 127.0.0.1:9015, for DaemonSets written for px-oci-mon.

Their readiness probe is `GET 127.0.0.1:9015/health`. The answers are the old ones:
503 `Node status UNKNOWN` until the service is installed, 503 `Node status INSTALLING`
while an install or upgrade runs, then the payload's own node health relayed as it comes
(5 s timeout; an error is 503 UNKNOWN). Everything is read from the status file, so the pod
needs no D-Bus for it. The old unauthenticated `POST /service/*` control is gone: every
POST gets 405 and a pointer to `pxhostctl`.

asyncio, one task per connection, bounded request head and time: a slow or huge request
can never hold up a health GET (the old monitor's long drain blocked its probe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pxhostd.paths import Paths
from pxhostd.status.probe import UnsafeHealthUrl, check_local_url
from pxhostd.status.statusfile import (
    DEFAULT_MAX_AGE,
    DaemonState,
    Status,
    StatusUnavailable,
    read_status,
)

LEGACY_ADDR = "127.0.0.1"
LEGACY_PORT = 9015
#: The old monitor waited this long for the payload's node health.
RELAY_TIMEOUT = 5.0
#: Relay errors are logged at debug level only this long after start (the payload is
#: still coming up), then as warnings at most once per period.
QUIET_PERIOD = 60.0
#: Longest request head (request line and headers) accepted.
MAX_REQUEST_HEAD = 8192
#: A client must send its request head within this time.
REQUEST_TIMEOUT = 10.0
#: Longest relayed answer read from the payload.
MAX_RELAY_BYTES = 64 * 1024
#: Connections served at once; more get 503 at once.
MAX_CONNECTIONS = 64

UNKNOWN = b"Node status UNKNOWN\n"
INSTALLING = b"Node status INSTALLING\n"
OK = b"Node status OK\n"
MOVED = (
    b"Control over this endpoint was removed. Use `pxhostctl` on the node (D-Bus, root only):"
    b" pxhostctl status | restart | uninstall. This endpoint answers GET and HEAD only.\n"
)

_REASONS = {
    200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
    431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable",
}

_log = logging.getLogger(__name__)
_DEFAULT_STATUS_PATH = Paths().status_file


@dataclass(frozen=True)
class Answer:
    code: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Relay:
    url: str


def decide(
    status: Status | None, *, now: float, max_age: float = DEFAULT_MAX_AGE
) -> Answer | Relay:
    """What GET /health answers for this status (None: no usable status file). Pure.

    INSTALLING needs a fresh heartbeat: a daemon that died mid-install must not keep the
    node 'installing' forever; then, as for any installed service, the payload decides.
    """
    if status is None:
        return Answer(503, UNKNOWN)
    fresh = abs(now - status.heartbeat) <= max_age
    if status.state == DaemonState.INSTALLING and fresh:
        return Answer(503, INSTALLING)
    if not status.version:
        return Answer(503, UNKNOWN)
    if status.health_url:
        return Relay(status.health_url)
    return Answer(200, OK) if status.ready and fresh else Answer(503, UNKNOWN)


class _QuietLog:
    """Relay errors: debug while the payload starts, then warnings at most once a period."""

    def __init__(self, quiet_period: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._loud_after = clock() + quiet_period
        self._period = quiet_period
        self._last_warning = float("-inf")

    def error(self, message: str) -> None:
        now = self._clock()
        if now < self._loud_after or now - self._last_warning < self._period:
            _log.debug("%s", message)
        else:
            self._last_warning = now
            _log.warning("%s", message)


async def relay(url: str, timeout: float = RELAY_TIMEOUT) -> Answer:
    """GET a loopback URL with HTTP/1.0 and return its answer; raise on any failure."""
    check_local_url(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET {target} HTTP/1.0\r\nHost: {host_header}\r\n"
                "User-Agent: pxhostd-pod\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            data = await reader.read(MAX_RELAY_BYTES + 1)
            while data and len(data) <= MAX_RELAY_BYTES:
                more = await reader.read(MAX_RELAY_BYTES + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if len(data) > MAX_RELAY_BYTES:
        raise ValueError(f"answer longer than {MAX_RELAY_BYTES} bytes")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("incomplete answer")
    lines = head.decode("latin-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"bad status line {lines[0][:80]!r}")
    content_type = "text/plain; charset=utf-8"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type" and value.strip().isprintable():
            content_type = value.strip()
    return Answer(int(fields[1]), body, content_type)


def _response(answer: Answer, *, head_only: bool = False, extra: str = "") -> bytes:
    reason = _REASONS.get(answer.code, "Status")
    head = (
        f"HTTP/1.1 {answer.code} {reason}\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else answer.body)


class HealthServer:
    """A running legacy endpoint; `close()` stops it and drops connections in flight."""

    def __init__(
        self,
        status_path: Path,
        *,
        max_age: float,
        relay_timeout: float,
        quiet_period: float,
        clock: Callable[[], float],
    ) -> None:
        self.status_path = status_path
        self.max_age = max_age
        self.relay_timeout = relay_timeout
        self._clock = clock
        self._quiet = _QuietLog(quiet_period, time.monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

        #: The bound port (useful when started on port 0); set by `start`.
        self.port = 0

    async def start(self, addr: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, addr, port, limit=MAX_REQUEST_HEAD, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def health_answer(self) -> Answer:
        try:
            status: Status | None = await asyncio.to_thread(read_status, self.status_path)
        except StatusUnavailable as exc:
            _log.debug("health: %s", exc)
            status = None
        decision = decide(status, now=self._clock(), max_age=self.max_age)
        if isinstance(decision, Answer):
            return decision
        try:
            return await relay(decision.url, self.relay_timeout)
        except (OSError, ValueError, UnsafeHealthUrl, TimeoutError) as exc:
            self._quiet.error(f"health relay to {decision.url} failed: {exc or type(exc).__name__}")
            return Answer(503, UNKNOWN)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= MAX_CONNECTIONS:
            await self._send(writer, _response(Answer(503, UNKNOWN), head_only=False))
            return
        self._tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            await self._send(writer, _response(Answer(408, b"request timeout\n")))
            return
        except asyncio.LimitOverrunError:
            await self._send(writer, _response(Answer(431, b"request too large\n")))
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, _response(Answer(400, b"bad request\n"), head_only=False))
            return
        method = parts[0]
        if method in ("GET", "HEAD"):
            answer = await self.health_answer()
            await self._send(writer, _response(answer, head_only=method == "HEAD"))
            return
        _log.info("refused %s %s on the legacy health endpoint", method[:16], parts[1][:80])
        await self._discard_body(reader, head)
        await self._send(
            writer, _response(Answer(405, MOVED), head_only=False, extra="Allow: GET, HEAD\r\n")
        )

    @staticmethod
    async def _discard_body(reader: asyncio.StreamReader, head: bytes) -> None:
        """Read a (bounded) request body so closing does not reset the answer away."""
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = min(int(value.strip()), MAX_RELAY_BYTES)
        with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
            async with asyncio.timeout(1.0):
                await reader.readexactly(length)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            await writer.drain()


async def serve_health(
    addr: str = LEGACY_ADDR,
    port: int = LEGACY_PORT,
    status_path: Path = _DEFAULT_STATUS_PATH,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    relay_timeout: float = RELAY_TIMEOUT,
    quiet_period: float = QUIET_PERIOD,
    clock: Callable[[], float] = time.time,
) -> HealthServer:
    """Start the legacy endpoint on `addr:port`; returns once it listens."""
    server = HealthServer(
        status_path,
        max_age=max_age,
        relay_timeout=relay_timeout,
        quiet_period=quiet_period,
        clock=clock,
    )
    await server.start(addr, port)
    return server
