"""The legacy health endpoint on 127.0.0.1:9015, for DaemonSets written for px-oci-mon.

Their readiness probe is `GET 127.0.0.1:9015/health`. The answers are the old ones:
503 `Node status UNKNOWN` until the service is installed, 503 `Node status INSTALLING`
while an install or upgrade runs, then the payload's own node health relayed as it comes
(5 s timeout; an error is 503 UNKNOWN). Everything is read from the status file, so the pod
needs no D-Bus for it. The old unauthenticated `POST /service/*` control is gone: every
POST gets 405 and a pointer to `pxhostctl`.

Served by `pxhostd.httpserve` (head timeout, per-peer and global connection caps, bounded
handlers, strict parsing): a slow, huge or hostile request can never hold up a health GET
(the old monitor's long drain blocked its probe), and a connection over a cap is answered
`503 overloaded`, never with a node status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pxhostd.httpserve import Limits, Request, Response, Server
from pxhostd.paths import Paths
from pxhostd.status.probe import UnsafeHealthUrl, check_local_url, local_get, status_code
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
#: Longest relayed answer read from the payload.
MAX_RELAY_BYTES = 64 * 1024
#: The endpoint's share of the node: a probe is one small GET, so heads are short.
LIMITS = Limits(max_target=2048, max_head=8192)

UNKNOWN = b"Node status UNKNOWN\n"
INSTALLING = b"Node status INSTALLING\n"
OK = b"Node status OK\n"
MOVED = (
    b"Control over this endpoint was removed. Use `pxhostctl` on the node (D-Bus, root only):"
    b" pxhostctl status | restart | uninstall. This endpoint answers GET and HEAD only.\n"
)

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
    host, port, request = local_get(url, "pxhostd-pod")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
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
    code = status_code(head)
    lines = head.decode("latin-1").split("\r\n")
    content_type = "text/plain; charset=utf-8"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type" and value.strip().isprintable():
            content_type = value.strip()
    return Answer(code, body, content_type)


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
        limits: Limits | None = None,
    ) -> None:
        self.status_path = status_path
        self.max_age = max_age
        self.relay_timeout = relay_timeout
        self._clock = clock
        self._quiet = _QuietLog(quiet_period, time.monotonic)
        self._http = Server(self._handle, limits=limits or LIMITS)

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0); set by `start`."""
        return self._http.port

    async def start(self, addr: str, port: int) -> None:
        await self._http.start(addr, port)

    async def close(self) -> None:
        await self._http.close()

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

    async def _handle(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            answer = await self.health_answer()
            return Response(answer.code, [("Content-Type", answer.content_type)], answer.body)
        _log.info("refused %s %s on the legacy health endpoint",
                  request.method[:16], request.path[:80])
        return Response(
            405, [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD")], MOVED
        )


async def serve_health(
    addr: str = LEGACY_ADDR,
    port: int = LEGACY_PORT,
    status_path: Path = _DEFAULT_STATUS_PATH,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    relay_timeout: float = RELAY_TIMEOUT,
    quiet_period: float = QUIET_PERIOD,
    clock: Callable[[], float] = time.time,
    limits: Limits | None = None,
) -> HealthServer:
    """Start the legacy endpoint on `addr:port`; returns once it listens."""
    server = HealthServer(
        status_path,
        max_age=max_age,
        relay_timeout=relay_timeout,
        quiet_period=quiet_period,
        clock=clock,
        limits=limits,
    )
    await server.start(addr, port)
    return server
