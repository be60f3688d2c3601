"""The legacy 9015 endpoint under hostile and heavy load, in its own process on loopback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hostile_http import (
    ATTACKER,
    PROBE,
    Answer,
    check_concurrent,
    check_get_with_body,
    check_half_open,
    check_probe_beside_attacker,
    connect,
    get,
    parse,
    read_to_eof,
    server_process,
)

from pxhostd.pod.health import LIMITS
from pxhostd.status.statusfile import DaemonState, Status, StatusFile

REPO = Path(__file__).resolve().parents[3]
OK = Answer(200, {}, b"Node status OK\n")
INSTALLING = Answer(503, {}, b"Node status INSTALLING\n")

#: The endpoint as the pod starts it, with the head timeout and per-peer cap as given.
RUN = """
import asyncio, dataclasses, sys
from pathlib import Path
from pxhostd.pod.health import LIMITS, serve_health

async def main() -> None:
    limits = dataclasses.replace(
        LIMITS, head_timeout=float(sys.argv[2]), per_peer=int(sys.argv[3]))
    server = await serve_health("127.0.0.1", 0, Path(sys.argv[1]), max_age=86400.0,
                                limits=limits)
    print("listening on", server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextmanager
def start(status: Path, head_timeout: float = 1.0,
          per_peer: int = LIMITS.per_peer) -> Iterator[tuple[int, int]]:
    """(pid, port) of the endpoint running in its own process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", RUN, str(status), str(head_timeout), str(per_peer)]
    with server_process(argv, env, str(REPO)) as running:
        yield running


def write_status(path: Path, **fields: object) -> None:
    StatusFile(path, boot_id="b").write(Status(**fields))  # type: ignore[arg-type]


@pytest.fixture
def status(tmp_path: Path) -> Path:
    path = tmp_path / "status"
    write_status(path, ready=True, state=DaemonState.IDLE, version="1.0.0")
    return path


@pytest.fixture
def endpoint(status: Path) -> Iterator[tuple[int, int]]:
    with start(status) as running:
        yield running


def test_200_concurrent_probes_are_all_answered(endpoint: tuple[int, int]) -> None:
    check_concurrent(endpoint[1], "/health", OK)


def test_400_half_open_connections_neither_block_nor_exhaust(
    endpoint: tuple[int, int],
) -> None:
    pid, port = endpoint
    check_half_open(pid, port, "/health", OK, held_at_most=LIMITS.per_peer + LIMITS.lingering)


def test_a_probe_beside_64_plus_half_open_connections_gets_the_real_health(
    status: Path, endpoint: tuple[int, int],
) -> None:
    port = endpoint[1]
    check_probe_beside_attacker(port, "/health", OK)
    # The node's real state, whatever it is: here an install in progress.
    write_status(status, state=DaemonState.INSTALLING, version="1.0.0")
    check_probe_beside_attacker(port, "/health", INSTALLING)


def test_over_the_per_peer_cap_is_overloaded_never_a_node_status(status: Path) -> None:
    """The old endpoint answered `503 UNKNOWN` to everyone once 64 connections idled."""
    with start(status, head_timeout=600.0, per_peer=8) as (_, port):
        held = [connect(port, ATTACKER) for _ in range(8)]
        try:
            assert (probe := get(port, "/health", source=PROBE)).status == 200, probe
            # The server accepts in order; retried in case an accept is still queued.
            for _ in range(3):
                with connect(port, ATTACKER) as extra:
                    extra.sendall(b"GET /health HTTP/1.1\r\n\r\n")
                    answer = parse(read_to_eof(extra))
                if answer.status == 503:
                    break
            assert (answer.status, answer.body) == (503, b"overloaded\n")
            assert answer.headers["connection"] == "close"
            assert get(port, "/health", source=PROBE).body == OK.body
        finally:
            for sock in held:
                sock.close()


def test_a_get_with_a_body_is_400(endpoint: tuple[int, int]) -> None:
    check_get_with_body(endpoint[1], "/health")
