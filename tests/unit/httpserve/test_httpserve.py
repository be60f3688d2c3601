"""pxhostd.httpserve on a real loopback socket: strict parsing, limits, caps, answers."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pxhostd.httpserve import OVERLOADED, Limits, Request, Response, Server, serve, text

Seen = list[Request]


async def echo_handler(seen: Seen, request: Request) -> Response:
    seen.append(request)
    if request.path == "/boom":
        raise RuntimeError("boom")
    if request.path == "/inject":
        return Response(200, [("X-Evil", "a\r\nSet-Cookie: b")], b"")
    if request.path == "/own":
        return Response(200, [("Content-Length", "999"), ("Connection", "keep-alive")], b"abc")
    return text(200, f"{request.method} {request.path} {request.query} {len(request.body)}\n")


def run(scenario: Callable[[Server, Seen], Awaitable[None]], **limits: float) -> Seen:
    seen: Seen = []

    async def handler(request: Request) -> Response:
        return await echo_handler(seen, request)

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0, limits=Limits(**limits),  # type: ignore[arg-type]
                             server_name="test/1")
        try:
            await scenario(server, seen)
        finally:
            await server.close()

    asyncio.run(main())
    return seen


async def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 60)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(data: bytes) -> int:
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1])


def fields_of(data: bytes) -> dict[str, str]:
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


GOOD = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\nHost: x\n\n", 400),  # bare LF
        (b"GET  /a HTTP/1.1\r\n\r\n", 400),  # two spaces
        (b"GET a HTTP/1.1\r\n\r\n", 400),  # not origin-form
        (b"G(T /a HTTP/1.1\r\n\r\n", 400),
        (b"GET /a HTTP/2.0\r\n\r\n", 505),
        (b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # space before the colon
        (b"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET /a HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n", 431),
        (b"GET /a HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
        (b"GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"HEAD /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /a HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413),
        (b"GET /a HTTP/1.1\r\nHost: x\r\n", 400),  # closed mid-head
    ],
)
def test_bad_requests_are_refused_and_never_reach_the_handler(
    request_bytes: bytes, status: int
) -> None:
    async def scenario(server: Server, seen: Seen) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request_bytes)
        if request_bytes.endswith(b"Host: x\r\n"):
            writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        assert status_of(data) == status, data
        assert fields_of(data)["connection"] == "close"
        assert data.count(b"HTTP/1.1 ") == 1

    assert run(scenario) == []


def test_a_good_request_and_what_the_server_adds() -> None:
    async def scenario(server: Server, seen: Seen) -> None:
        data = await exchange(server.port, GOOD)
        assert status_of(data) == 200
        fields = fields_of(data)
        assert fields["content-length"] == str(len(b"GET /a b=c 0\n"))
        assert fields["connection"] == "close"
        assert fields["server"] == "test/1"
        assert "date" in fields
        assert data.endswith(b"\r\n\r\nGET /a b=c 0\n")
        head = await exchange(server.port, GOOD.replace(b"GET", b"HEAD"))
        assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")
        assert fields_of(head)["content-length"] == str(len(b"HEAD /a b=c 0\n"))
        posted = await exchange(server.port, b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        assert posted.endswith(b"POST /p  5\n")
        own = await exchange(server.port, b"GET /own HTTP/1.1\r\n\r\n")
        assert fields_of(own)["content-length"] == "3" and fields_of(own)["connection"] == "close"

    seen = run(scenario)
    assert seen[0].header("HOST") == "x" and seen[0].target == "/a?b=c"
    assert seen[2].body == b"hello"


def test_handler_failures_are_500(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: Server, seen: Seen) -> None:
        assert status_of(await exchange(server.port, b"GET /boom HTTP/1.1\r\n\r\n")) == 500
        injected = await exchange(server.port, b"GET /inject HTTP/1.1\r\n\r\n")
        assert status_of(injected) == 500 and b"Set-Cookie" not in injected

    with caplog.at_level(logging.ERROR, logger="pxhostd.httpserve"):
        run(scenario)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_head_timeout_closes_silent_and_slow_clients() -> None:
    async def scenario(server: Server, seen: Seen) -> None:
        silent = await exchange(server.port, b"")
        slow = await exchange(server.port, b"GET /a HTTP/1.1\r\nHo")
        assert status_of(silent) == status_of(slow) == 408

    assert run(scenario, head_timeout=0.5) == []


def test_per_peer_and_global_caps_answer_overloaded() -> None:
    async def scenario(server: Server, seen: Seen) -> None:
        held = [await asyncio.open_connection("127.0.0.1", server.port,
                                              local_addr=("127.0.0.2", 0)) for _ in range(2)]
        over_peer = await exchange(server.port, GOOD, source="127.0.0.2")
        assert status_of(over_peer) == 503 and over_peer.endswith(b"\r\n\r\n" + OVERLOADED)
        assert fields_of(over_peer)["connection"] == "close"
        other = await exchange(server.port, GOOD, source="127.0.0.3")
        assert status_of(other) == 200  # another peer is served
        held.append(await asyncio.open_connection("127.0.0.1", server.port,
                                                  local_addr=("127.0.0.4", 0)))
        over_all = await exchange(server.port, GOOD, source="127.0.0.5")
        assert status_of(over_all) == 503 and over_all.endswith(OVERLOADED)
        for _, writer in held:
            writer.close()
        while server.connections:  # the server sees them go
            await asyncio.sleep(0.01)
        assert status_of(await exchange(server.port, GOOD, source="127.0.0.2")) == 200

    run(scenario, per_peer=2, total=3, head_timeout=600)


def test_handlers_run_under_the_bound() -> None:
    running = 0
    most = 0
    release = asyncio.Event

    async def main() -> None:
        nonlocal running, most
        gate = release()

        async def handler(request: Request) -> Response:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await gate.wait()
            running -= 1
            return text(200, "ok\n")

        server = await serve(handler, "127.0.0.1", 0, limits=Limits(handlers=3))
        try:
            tasks = [asyncio.create_task(exchange(server.port, GOOD)) for _ in range(10)]
            while running + server.waiting < 10:  # every request read, three let in
                await asyncio.sleep(0.01)
            assert (running, server.waiting) == (3, 7)
            gate.set()
            assert [status_of(d) for d in await asyncio.gather(*tasks)] == [200] * 10
        finally:
            await server.close()

    asyncio.run(main())
    assert most == 3


def test_listen_backlog_is_at_least_128() -> None:
    """What the kernel holds for the listening socket (ss shows it as Send-Q)."""
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())

    async def scenario(server: Server, seen: Seen) -> None:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], check=True,
                             capture_output=True, text=True).stdout.split()
        assert out[0] == "LISTEN", out
        assert int(out[2]) == min(Limits().backlog, somaxconn) >= 128

    run(scenario)


def test_refusals_are_logged_once_a_minute_with_their_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.access")

    async def handler(request: Request) -> Response:
        return text(200, "ok\n")

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0, access_log=log,
                             limits=Limits(per_peer=1, head_timeout=600))
        try:
            _, holder = await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(5):
                assert (await exchange(server.port, GOOD)).endswith(OVERLOADED)
            holder.close()
        finally:
            await server.close()

    with caplog.at_level(logging.WARNING, logger="test.access"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == ["1 connection(s) refused: overloaded"]
