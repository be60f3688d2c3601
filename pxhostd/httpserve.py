"""The one small HTTP/1.1 server of the project (the pod's health endpoint, pxhostd-specgen).

asyncio on `asyncio.start_server`, stdlib only, so every layer may use it. It is built
for hostile clients rather than speed: the request head must arrive within a few seconds,
each peer address may hold only a few connections and all of them together a bounded
number (more are answered at once with `503 overloaded` and closed), handlers run under a
semaphore, the head is parsed strictly with size limits, GET and HEAD may not carry a
body (that would be a second request hidden in the first, a desync behind a proxy), and
every response ends the connection (`Connection: close`): one request per connection.

Handlers are async functions of a `Request` that return a `Response`
(status, headers, body); the server adds Content-Length, Connection, Date and Server.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NamedTuple
from urllib.parse import urlsplit

#: The body of the answer to a connection over a cap: never a health answer.
OVERLOADED = b"overloaded\n"

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
#: The fields the server itself writes; a handler's copies are dropped.
_OWN_FIELDS = frozenset({"content-length", "connection", "date", "server", "transfer-encoding"})


@dataclass(frozen=True)
class Limits:
    """How much any one client, and all of them together, may take."""

    #: The request line and headers (and any body) must arrive within this many seconds.
    head_timeout: float = 5.0
    #: Writing the response may take this long before the connection is dropped.
    write_timeout: float = 10.0
    #: Longest request target (414 beyond).
    max_target: int = 4096
    #: Longest request head, request line included (431 beyond).
    max_head: int = 16 * 1024
    #: Most header fields (431 beyond).
    max_fields: int = 64
    #: Longest request body of a method that may have one (413 beyond).
    max_body: int = 64 * 1024
    #: Connections one peer address may hold at once.
    per_peer: int = 256
    #: Connections all peers together may hold at once.
    total: int = 1024
    #: Connections refused over a cap that may linger (a second at most) until the client
    #: has read the answer; further ones are closed at once.
    lingering: int = 32
    #: Handlers running at once; further complete requests wait for a turn.
    handlers: int = 16
    #: The listen(2) backlog.
    backlog: int = 512


@dataclass(frozen=True)
class Request:
    method: str
    #: The raw request target, query included (may carry secrets: log `path` only).
    target: str
    path: str
    query: str
    version: str
    #: Header fields in order; names lower-cased.
    fields: tuple[tuple[str, str], ...]
    peer: str
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        """The first field called `name` (case-insensitive)."""
        wanted = name.lower()
        return next((v for k, v in self.fields if k == wanted), default)


class Response(NamedTuple):
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


Handler = Callable[[Request], Awaitable[Response]]


class _Refused(Exception):
    """The request cannot be served; answer `status` with `message` and close."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def text(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A text/plain response."""
    return Response(
        status, [("Content-Type", "text/plain; charset=utf-8"), *headers], message.encode()
    )


@dataclass
class _Counts:
    total: int = 0
    by_peer: Counter[str] = field(default_factory=Counter)


class Server:
    """A listening server; `close()` stops it and drops every connection in flight."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: Limits | None = None,
        server_name: str | None = None,
        access_log: logging.Logger | None = None,
    ) -> None:
        self._handler = handler
        self.limits = limits = limits or Limits()
        self._server_name = server_name
        self._log = access_log
        self._counts = _Counts()
        self._turns = asyncio.Semaphore(limits.handlers)
        self._waiting = 0
        self._refused = 0
        self._refusals = 0
        self._refusals_logged = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        #: The bound address and port (port 0 picks a free one); set by `start`.
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        # The stream limit bounds any one line; _read_request checks the sums.
        self._server = await asyncio.start_server(
            self._connection,
            host,
            port,
            limit=max(self.limits.max_head, self.limits.max_target + 64),
            backlog=self.limits.backlog,
            reuse_address=True,
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        )
        name = self._server.sockets[0].getsockname()
        self.host, self.port = str(name[0]), int(name[1])

    @property
    def connections(self) -> int:
        """Connections held now (those refused over a cap not counted)."""
        return self._counts.total

    @property
    def waiting(self) -> int:
        """Complete requests waiting for a handler turn."""
        return self._waiting

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- one connection ----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        counts = self._counts
        try:
            if counts.total >= self.limits.total or counts.by_peer[peer] >= self.limits.per_peer:
                await self._refuse_overloaded(reader, writer)
                return
            counts.total += 1
            counts.by_peer[peer] += 1
            try:
                await self._serve(reader, writer, peer)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                pass  # the client went away, or would not read its answer
            finally:
                counts.total -= 1
                counts.by_peer[peer] -= 1
                if counts.by_peer[peer] <= 0:
                    del counts.by_peer[peer]
        finally:
            self._tasks.discard(task)
            await self._close(writer)

    async def _refuse_overloaded(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._note_refusal()
        answer = text(HTTPStatus.SERVICE_UNAVAILABLE, OVERLOADED.decode(), [("Retry-After", "1")])
        # Lingering (so the answer is not lost to a reset) is itself capped: past the cap
        # a refused connection is just closed.
        linger = self._refused < self.limits.lingering
        self._refused += 1
        try:
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(self._head(answer.status, answer.headers, len(answer.body))
                             + answer.body)
                async with asyncio.timeout(1.0):
                    await writer.drain()
                if linger and writer.can_write_eof():
                    writer.write_eof()
                    await self._linger(reader)
        finally:
            self._refused -= 1

    def _note_refusal(self) -> None:
        """Log refusals at most once a minute, with their number: a flood must not flood."""
        self._refusals += 1
        now = time.monotonic()
        if self._log is not None and now - self._refusals_logged >= 60.0:
            self._log.warning("%d connection(s) refused: overloaded", self._refusals)
            self._refusals, self._refusals_logged = 0, now

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                request = await self._read_request(reader, peer)
        except TimeoutError:
            timeout = text(HTTPStatus.REQUEST_TIMEOUT, "request timeout\n")
            await self._send(reader, writer, None, timeout)
            return
        except _Refused as refused:
            if self._log is not None:
                self._log.warning("%s request rejected with code %d", peer, refused.status)
            await self._send(reader, writer, None, text(refused.status, refused.message + "\n"))
            return
        if request is None:
            return
        self._waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self._waiting -= 1
        try:
            response = await self._handler(request)
        except Exception:
            logging.getLogger(__name__).exception("handler failed on %s", request.path)
            response = text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        finally:
            self._turns.release()
        if self._log is not None:
            self._log.info('%s "%s %s" %d', peer, request.method, request.path, response.status)
        await self._send(reader, writer, request, response)

    async def _read_request(self, reader: asyncio.StreamReader, peer: str) -> Request | None:
        """The request, or None when the client closed without sending one."""
        limits = self.limits
        line = await self._read_line(
            reader, HTTPStatus.REQUEST_URI_TOO_LONG, "request URI too long"
        )
        if line is None:
            return None
        parts = line.split(b" ")
        if len(parts) != 3:
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
        method, target, version = parts
        if not _TOKEN.fullmatch(method) or not _VERSION.fullmatch(version):
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request line")
        if len(target) > limits.max_target:
            raise _Refused(HTTPStatus.REQUEST_URI_TOO_LONG, "request URI too long")
        if not _TARGET.fullmatch(target) or not (target.startswith(b"/") or target == b"*"):
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed request target")
        if version not in (b"HTTP/1.0", b"HTTP/1.1"):
            raise _Refused(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.0 and 1.1 only")
        size = len(line)
        fields: list[tuple[str, str]] = []
        while True:
            raw = await self._read_line(
                reader, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"
            )
            if raw is None:
                raise _Refused(HTTPStatus.BAD_REQUEST, "incomplete request head")
            if not raw:
                break
            size += len(raw) + 2
            if size > limits.max_head or len(fields) >= limits.max_fields:
                raise _Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            name, colon, value = raw.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):  # also refuses obs-fold and "name :"
                raise _Refused(HTTPStatus.BAD_REQUEST, "malformed header field")
            value = value.strip(b" \t")
            if not _FIELD_VALUE.fullmatch(value):
                raise _Refused(HTTPStatus.BAD_REQUEST, "malformed header field")
            fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
        method_s = method.decode("ascii")
        body = await self._read_body(reader, method_s, fields)
        url = urlsplit(target.decode("ascii"))
        return Request(
            method=method_s, target=target.decode("ascii"), path=url.path, query=url.query,
            version=version.decode("ascii"), fields=tuple(fields), peer=peer, body=body,
        )

    async def _read_line(
        self, reader: asyncio.StreamReader, too_long: HTTPStatus, message: str
    ) -> bytes | None:
        """One CRLF-terminated line without its CRLF; None at EOF before anything was sent."""
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise _Refused(too_long, message) from exc
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _Refused(HTTPStatus.BAD_REQUEST, "incomplete request head") from exc
            return None
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise _Refused(HTTPStatus.BAD_REQUEST, "lines must end with CRLF")
        return line[:-2]

    async def _read_body(
        self, reader: asyncio.StreamReader, method: str, fields: list[tuple[str, str]]
    ) -> bytes:
        lengths = {v for k, v in fields if k == "content-length"}
        if any(k == "transfer-encoding" for k, _ in fields):
            raise _Refused(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not accepted")
        if not lengths:
            return b""
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise _Refused(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
        length = int(next(iter(lengths)))
        if length and method in ("GET", "HEAD"):
            raise _Refused(HTTPStatus.BAD_REQUEST, f"{method} requests carry no body")
        if length > self.limits.max_body:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        return await reader.readexactly(length)

    # -- the answer --------------------------------------------------------------------

    def _head(self, status: int, headers: Sequence[tuple[str, str]], length: int) -> bytes:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _OWN_FIELDS]
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if self._server_name:
            lines.append(f"Server: {self._server_name}")
        lines += [f"Content-Length: {length}", "Connection: close", "", ""]
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"line break in a response header: {line[:80]!r}")
        return "\r\n".join(lines).encode("latin-1")

    async def _send(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: Request | None,
        response: Response,
    ) -> None:
        status, headers, body = response
        try:
            data = self._head(status, headers, len(body))
        except ValueError:
            logging.getLogger(__name__).exception("refused to send a broken response")
            status, headers, body = text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
            data = self._head(status, headers, len(body))
        if request is None or request.method != "HEAD":
            data += body
        writer.write(data)
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        await self._linger(reader)

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        """Read what the client still sends, briefly, so closing does not reset the answer."""
        left = self.limits.max_body
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(min(1.0, self.limits.head_timeout)):
                while left > 0 and (chunk := await reader.read(min(left, 65536))):
                    left -= len(chunk)


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    limits: Limits | None = None,
    server_name: str | None = None,
    access_log: logging.Logger | None = None,
) -> Server:
    """Start a server on `host:port`; returns once it listens."""
    server = Server(handler, limits=limits, server_name=server_name, access_log=access_log)
    await server.start(host, port)
    return server
