"""The legacy 9015 endpoint, served for real on a random port, in every state."""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from local_http import serve

from pxhostd.pod import health
from pxhostd.pod.health import Answer, HealthServer, Relay, decide, serve_health
from pxhostd.status.statusfile import DaemonState, Status, StatusFile

NOW = 1_700_000_000.0
NODEHEALTH_BODY = b'{"status": "healthy", "version": "1.0.0"}\n'


class NodeHealth(http.server.BaseHTTPRequestHandler):
    """The payload's :9001 stand-in."""

    def do_GET(self) -> None:
        if self.path == "/v1/cluster/nodehealth":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(NODEHEALTH_BODY)))
            self.end_headers()
            self.wfile.write(NODEHEALTH_BODY)
        else:
            self.send_response(503)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"sick")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def nodehealth() -> Iterator[str]:
    with serve(NodeHealth) as url:
        yield url


def write_status(path: Path, **fields: object) -> None:
    StatusFile(path, boot_id="b", clock=lambda: NOW).write(Status(**fields))  # type: ignore[arg-type]


async def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str = "/health", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def with_server(
    status_path: Path, scenario: Callable[[HealthServer], Awaitable[None]], **kw: object
) -> None:
    async def main() -> None:
        server = await serve_health("127.0.0.1", 0, status_path, clock=lambda: NOW, **kw)  # type: ignore[arg-type]
        try:
            await scenario(server)
        finally:
            await server.close()

    asyncio.run(main())


def test_decide_table() -> None:
    url = "http://127.0.0.1:9001/v1/cluster/nodehealth"
    assert decide(None, now=NOW) == Answer(503, b"Node status UNKNOWN\n")
    assert decide(Status(state=DaemonState.STARTING, heartbeat=NOW), now=NOW) == Answer(
        503, b"Node status UNKNOWN\n"
    )
    installing = Status(
        state=DaemonState.INSTALLING, version="1.0.0", health_url=url, heartbeat=NOW
    )
    assert decide(installing, now=NOW) == Answer(503, b"Node status INSTALLING\n")
    # A daemon that died mid-install does not pin the node to INSTALLING forever.
    assert decide(installing, now=NOW + 3600) == Relay(url)
    installed = Status(state=DaemonState.IDLE, version="1.0.0", health_url=url, heartbeat=NOW)
    assert decide(installed, now=NOW) == Relay(url)
    no_url = Status(ready=True, state=DaemonState.IDLE, version="1.0.0", heartbeat=NOW)
    assert decide(no_url, now=NOW) == Answer(200, b"Node status OK\n")
    assert decide(no_url, now=NOW + 3600) == Answer(503, b"Node status UNKNOWN\n")


def test_unknown_without_status_file(tmp_path: Path) -> None:
    async def scenario(server: HealthServer) -> None:
        code, headers, body = await exchange(server.port, get())
        assert (code, body) == (503, b"Node status UNKNOWN\n")
        assert headers["content-length"] == str(len(body))
        assert headers["connection"] == "close"

    with_server(tmp_path / "status", scenario)


def test_installing_then_relay(tmp_path: Path, nodehealth: str) -> None:
    path = tmp_path / "status"
    url = f"{nodehealth}/v1/cluster/nodehealth"

    async def scenario(server: HealthServer) -> None:
        write_status(path, state=DaemonState.INSTALLING, version="1.0.0", health_url=url)
        assert (await exchange(server.port, get()))[::2] == (503, b"Node status INSTALLING\n")

        write_status(path, ready=True, state=DaemonState.IDLE, version="1.0.0", health_url=url)
        code, headers, body = await exchange(server.port, get())
        assert (code, body) == (200, NODEHEALTH_BODY)
        assert headers["content-type"] == "application/json"

        code, headers, body = await exchange(server.port, get(method="HEAD"))
        assert (code, body) == (200, b"")
        assert headers["content-length"] == str(len(NODEHEALTH_BODY))

        # Any path answers, as the old endpoint's probes may use other ones.
        assert (await exchange(server.port, get("/")))[0] == 200

        # The payload's own non-2xx answer is relayed as it comes.
        write_status(path, state=DaemonState.IDLE, version="1.0.0", health_url=f"{nodehealth}/x")
        assert (await exchange(server.port, get()))[::2] == (503, b"sick")

    with_server(path, scenario)


def test_relay_timeout_and_refused_are_unknown(tmp_path: Path) -> None:
    path = tmp_path / "status"
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts into the backlog, never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused

        async def scenario(server: HealthServer) -> None:
            for sock in (silent, closed):
                port = sock.getsockname()[1]
                write_status(path, state="idle", version="1.0.0",
                             health_url=f"http://127.0.0.1:{port}/v1/cluster/nodehealth")
                assert (await exchange(server.port, get()))[::2] == (503, b"Node status UNKNOWN\n")

        with_server(path, scenario, relay_timeout=0.2)


def test_relay_refuses_non_loopback(tmp_path: Path) -> None:
    path = tmp_path / "status"
    write_status(path, state="idle", version="1.0.0", health_url="http://192.0.2.1:9001/h")

    async def scenario(server: HealthServer) -> None:
        assert (await exchange(server.port, get()))[::2] == (503, b"Node status UNKNOWN\n")

    with_server(path, scenario)


def test_post_is_refused_with_a_pointer_to_pxhostctl(tmp_path: Path) -> None:
    async def scenario(server: HealthServer) -> None:
        request = (b"POST /service/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        code, headers, body = await exchange(server.port, request)
        assert code == 405
        assert headers["allow"] == "GET, HEAD"
        assert b"pxhostctl" in body
        code, _, _ = await exchange(server.port, b"DELETE /x HTTP/1.1\r\n\r\n")
        assert code == 405

    with_server(tmp_path / "status", scenario)


def test_bad_and_oversized_requests(tmp_path: Path) -> None:
    async def scenario(server: HealthServer) -> None:
        assert (await exchange(server.port, b"garbage\r\n\r\n"))[0] == 400
        huge = b"GET /health HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await exchange(server.port, huge))[0] == 431

    with_server(tmp_path / "status", scenario)


def test_slow_clients_do_not_block_health(tmp_path: Path) -> None:
    async def scenario(server: HealthServer) -> None:
        idle = []
        for _ in range(5):  # each sends half a request head and then nothing
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost:")
            await writer.drain()
            idle.append(writer)
        assert (await exchange(server.port, get()))[0] == 503
        for writer in idle:
            writer.close()

    with_server(tmp_path / "status", scenario)


def test_close_drops_connections_in_flight(tmp_path: Path) -> None:
    async def scenario(server: HealthServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.1\r\n")
        await writer.drain()
        await server.close()
        try:
            rest = await asyncio.wait_for(reader.read(), 30)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # closed (EOF or reset) without an answer
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)

    with_server(tmp_path / "status", scenario)


def test_relay_errors_are_quiet_at_first(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    quiet = health._QuietLog(60.0, lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="pxhostd.pod.health"):
        quiet.error("first")
        now[0] = 61.0
        quiet.error("second")
        now[0] = 62.0
        quiet.error("third")
        now[0] = 122.0
        quiet.error("fourth")
    levels = [(r.getMessage(), r.levelno) for r in caplog.records]
    assert levels == [
        ("first", logging.DEBUG),
        ("second", logging.WARNING),
        ("third", logging.DEBUG),
        ("fourth", logging.WARNING),
    ]


def test_relays_the_real_demo_payload(tmp_path: Path) -> None:
    """End to end on one machine: pxdemo's nodehealth relayed through the 9015 endpoint."""
    import subprocess
    import sys

    demo = Path(__file__).resolve().parents[3] / "container" / "demo-payload" / "pxdemo.py"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    proc = subprocess.Popen(
        [sys.executable, "-S", str(demo), "--port", "0", "--config", str(tmp_path / "none")],
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")}, stderr=subprocess.DEVNULL,
    )
    try:
        message = notify.recv(4096).decode()
        assert "READY=1" in message
        port = int(message.rsplit(":", 1)[1])
        path = tmp_path / "status"
        write_status(path, ready=True, state="idle", version="0.0.0-dev",
                     health_url=f"http://127.0.0.1:{port}/v1/cluster/nodehealth")

        async def scenario(server: HealthServer) -> None:
            code, headers, body = await exchange(server.port, get())
            assert code == 200
            assert headers["content-type"] == "application/json"
            assert b'"status": "healthy"' in body
            assert b'"version": "0.0.0-dev"' in body

        with_server(path, scenario)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        notify.close()
